//! Incremental decoding with a `KvCache` reproduces one full causal forward pass, for every
//! position encoding (relative ones inside the layer, absolute ones added at the right offset).

use crate::common::{attention, dev, max_abs_diff, seeded, values};
use burn::tensor::{Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use seqlayers::attention::{
    AttentionConfig, CausalMasking, KvCache, MultiHeadAttention, QkvSharing,
};
use seqlayers::backend::Cpu;
use seqlayers::position::{AbsolutePosition, PositionEncoding};

const TOL: f32 = 1e-5;

fn random_input(seed: u64, shape: [usize; 3]) -> Tensor<Cpu, 3> {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|_| rng.random_range(-1.732f32..1.732)).collect();
    Tensor::from_data(TensorData::new(data, shape), &dev())
}

/// Decodes `x` `[B, L, D]` in chunks of the given sizes (summing to `L`); optionally adds the
/// absolute encoding at each chunk's offset first.
fn decode(
    attn: &MultiHeadAttention<Cpu>,
    absolute: Option<&AbsolutePosition<Cpu>>,
    x: Tensor<Cpu, 3>,
    chunks: &[usize],
) -> Tensor<Cpu, 3> {
    let mut cache = KvCache::new();
    let mut outputs = Vec::new();
    let mut start = 0;
    for &len in chunks {
        let mut piece = x.clone().narrow(1, start, len); // [B, len, D]
        if let Some(pe) = absolute {
            piece = pe.try_forward(piece, start).unwrap();
        }
        assert_eq!(cache.len(), start);
        outputs.push(
            attn.forward_with_state(piece, cache.clone())
                .map(|(y, next)| {
                    cache = next;
                    y
                })
                .unwrap(),
        );
        start += len;
    }
    Tensor::cat(outputs, 1)
}

fn full(
    attn: &MultiHeadAttention<Cpu>,
    absolute: Option<&AbsolutePosition<Cpu>>,
    x: Tensor<Cpu, 3>,
) -> Tensor<Cpu, 3> {
    let x = match absolute {
        Some(pe) => pe.try_forward(x, 0).unwrap(),
        None => x,
    };
    attn.forward(x)
}

#[test]
fn token_by_token_decoding_equals_full_forward_for_relative_encodings() {
    let (b, l, d, h) = (2, 11, 8, 4);
    let x = random_input(10, [b, l, d]);
    let encodings = [
        PositionEncoding::None,
        PositionEncoding::rope(),
        PositionEncoding::alibi(),
        PositionEncoding::hard_alibi(1),
        PositionEncoding::hard_alibi(3),
    ];
    for position in encodings {
        for sharing in [QkvSharing::Separate, QkvSharing::SharedQKV] {
            let attn = attention(
                AttentionConfig::new(d, h)
                    .with_position(position.clone())
                    .with_sharing(sharing),
                101,
            );
            let reference = values(full(&attn, None, x.clone()));
            let steps = values(decode(&attn, None, x.clone(), &[1; 11]));
            let diff = max_abs_diff(&steps, &reference);
            assert!(
                diff <= TOL,
                "{position:?} {sharing:?} token by token: {diff}"
            );
            // Chunked prefill followed by single steps.
            let chunked = values(decode(&attn, None, x.clone(), &[4, 1, 3, 1, 2]));
            let diff = max_abs_diff(&chunked, &reference);
            assert!(diff <= TOL, "{position:?} {sharing:?} chunked: {diff}");
        }
    }
}

#[test]
fn decoding_with_absolute_encodings_applied_at_the_offset() {
    let (b, l, d, h) = (2, 9, 8, 2);
    let x = random_input(11, [b, l, d]);
    for position in [
        PositionEncoding::learned(16),
        PositionEncoding::sinusoidal(),
    ] {
        let attn = attention(
            AttentionConfig::new(d, h).with_position(position.clone()),
            102,
        );
        let pe = seeded(3, || position.init_absolute::<Cpu>(d, &dev()).unwrap());
        let reference = values(full(&attn, Some(&pe), x.clone()));
        let steps = values(decode(&attn, Some(&pe), x.clone(), &[1; 9]));
        let diff = max_abs_diff(&steps, &reference);
        assert!(diff <= TOL, "{position:?}: {diff}");
        // Applying the encoding at offset 0 for every token (the bug this guards against)
        // gives different outputs.
        let mut cache = KvCache::new();
        let wrong: Vec<_> = (0..l)
            .map(|t| {
                let piece = pe.try_forward(x.clone().narrow(1, t, 1), 0).unwrap();
                attn.forward_with_state(piece, cache.clone())
                    .map(|(y, next)| {
                        cache = next;
                        y
                    })
                    .unwrap()
            })
            .collect();
        let diff = max_abs_diff(&values(Tensor::cat(wrong, 1)), &reference);
        assert!(diff > 1e-3, "{position:?}: offset had no effect ({diff})");
    }
}

/// With one token per step there is no future to leak, so naive masking decodes exactly like
/// correct masking — and therefore differs from its own (leaky) full forward pass.
#[test]
fn naive_masking_only_leaks_in_the_full_pass() {
    let (b, l, d, h) = (1, 6, 8, 2);
    let x = random_input(12, [b, l, d]);
    let naive = attention(
        AttentionConfig::new(d, h).with_masking(CausalMasking::NaivePostSoftmax),
        103,
    );
    let mut correct = naive.clone();
    correct.masking = CausalMasking::PreSoftmax;
    let stepped = values(decode(&naive, None, x.clone(), &[1; 6]));
    let diff = max_abs_diff(&stepped, &values(correct.forward(x.clone())));
    assert!(diff <= TOL, "naive step vs correct full: {diff}");
    let diff = max_abs_diff(&stepped, &values(naive.forward(x)));
    assert!(diff > 1e-3, "naive full pass should differ: {diff}");
}
