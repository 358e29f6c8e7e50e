//! Incremental decoding of whole stacks and language models: step-by-step and chunked logits
//! equal one full forward pass, cached greedy generation equals recomputing the prefix, padded
//! prompts give the answers of unpadded ones; and the tensor-op paths (backend type
//! `NdArray<f64>`, computing in f32: see the test) agree with the kernels of `NdArray<f32>`.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Int, Tensor, TensorData};
use seqlayers::SeqError;
use seqlayers::backend::Cpu;
use seqlayers::decode::{Decoder, GenerateConfig, generate_greedy, generate_greedy_padded};
use seqlayers::model::{LanguageModel, LanguageModelConfig};
use seqlayers::nn::NormKind;
use seqlayers::position::PositionEncoding;
use seqlayers::stack::{StackConfig, parse_layers};

use crate::common::{copy_params, dev, max_abs_diff, values};

const VOCAB: usize = 11;

/// The stacks under test: every layer kind alone, GPT blocks, and mixed stacks, each with the
/// position encodings that apply to it.
fn cases() -> Vec<(&'static str, PositionEncoding, NormKind)> {
    vec![
        ("attention", PositionEncoding::rope(), NormKind::Rms),
        (
            "attention+mlp,attention+mlp",
            PositionEncoding::learned(32),
            NormKind::Layer,
        ),
        (
            "attention+mlp",
            PositionEncoding::sinusoidal(),
            NormKind::Layer,
        ),
        ("attention", PositionEncoding::alibi(), NormKind::Rms),
        ("mamba", PositionEncoding::None, NormKind::Rms),
        ("lstm", PositionEncoding::None, NormKind::Rms),
        (
            "mamba,attention+mlp",
            PositionEncoding::rope(),
            NormKind::Rms,
        ),
        (
            "mamba+mlp,lstm,attention",
            PositionEncoding::None,
            NormKind::Layer,
        ),
    ]
}

fn model<B: Backend>(spec: &str, position: PositionEncoding, norm: NormKind) -> LanguageModel<B> {
    let stack = StackConfig::new(8, parse_layers(spec).unwrap())
        .with_n_heads(2)
        .with_position(position)
        .with_norm(norm)
        .with_mamba(seqlayers::ssm::MambaConfig::new(8).with_d_state(4));
    crate::common::seeded_on::<B, _>(11, || {
        LanguageModelConfig::new(stack, VOCAB)
            .try_init::<B>(&Default::default())
            .unwrap()
    })
}

fn ids<B: Backend>(rows: &[Vec<u32>]) -> Tensor<B, 2, Int> {
    let len = rows[0].len();
    let flat: Vec<i64> = rows.iter().flatten().map(|&t| t as i64).collect();
    Tensor::from_data(
        TensorData::new(flat, [rows.len(), len]),
        &Default::default(),
    )
}

fn tokens(batch: usize, len: usize, seed: u32) -> Vec<Vec<u32>> {
    (0..batch)
        .map(|b| {
            (0..len)
                .map(|t| (seed + 7 * b as u32 + 3 * t as u32 + (t * t) as u32) % VOCAB as u32)
                .collect()
        })
        .collect()
}

/// Logits of `rows` fed in chunks of the given lengths, concatenated over positions.
fn chunked(m: &LanguageModel<Cpu>, rows: &[Vec<u32>], chunks: &[usize]) -> Vec<f32> {
    let mut state = m.init_state(rows.len(), &dev());
    let mut parts = Vec::new();
    let mut start = 0;
    for &c in chunks {
        let piece: Vec<Vec<u32>> = rows.iter().map(|r| r[start..start + c].to_vec()).collect();
        let (logits, next) = m.forward_with_state(ids(&piece), state).unwrap();
        state = next;
        parts.push(logits);
        start += c;
    }
    assert_eq!(state.position, start);
    values(Tensor::cat(parts, 1))
}

#[test]
fn step_by_step_and_chunked_prefill_equal_one_forward_pass() {
    let rows = tokens(3, 12, 1);
    for (spec, position, norm) in cases() {
        let m = model::<Cpu>(spec, position.clone(), norm);
        let full = values(m.forward(ids(&rows)).unwrap()); // [3, 12, V]
        let steps = chunked(&m, &rows, &[1; 12]);
        let pieces = chunked(&m, &rows, &[5, 4, 3]);
        let one = chunked(&m, &rows, &[12]);
        for (what, got) in [("steps", steps), ("chunks", pieces), ("one chunk", one)] {
            let diff = max_abs_diff(&got, &full);
            assert!(
                diff <= 1e-5,
                "{spec} {position:?} {what}: max |Δ| = {diff:e}"
            );
        }
    }
}

/// Greedy decoding without state: recompute the whole prefix for every new token.
fn greedy_uncached(m: &LanguageModel<Cpu>, prompt: &[u32], max_new: usize, stop: u32) -> Vec<u32> {
    let mut seq = prompt.to_vec();
    let mut out = Vec::new();
    for _ in 0..max_new {
        let logits = m.forward(ids(&[seq.clone()])).unwrap(); // [1, L, V]
        let [_, l, v] = logits.dims();
        let last = values(logits.narrow(1, l - 1, 1).reshape([v]));
        let next = (0..v)
            .max_by(|&a, &b| last[a].total_cmp(&last[b]).then(b.cmp(&a)))
            .unwrap() as u32;
        if next == stop {
            break;
        }
        out.push(next);
        seq.push(next);
    }
    out
}

#[test]
fn cached_greedy_generation_equals_recomputing_the_prefix() {
    let prompts = vec![
        vec![1, 2, 3],
        vec![4, 5],
        vec![6, 7, 8, 9, 10],
        vec![3, 1, 4],
    ];
    let config = GenerateConfig::new(9).with_stop_token(0);
    for (spec, position, norm) in cases() {
        let m = model::<Cpu>(spec, position.clone(), norm);
        let cached = generate_greedy(&m, &prompts, config, &dev()).unwrap();
        for (p, got) in prompts.iter().zip(&cached) {
            assert_eq!(
                got,
                &greedy_uncached(&m, p, 9, 0),
                "{spec} {position:?} prompt {p:?}"
            );
            assert!(got.len() <= 9 && !got.contains(&0));
        }
        // The same prompts padded on the left or on the right (pad id 0) give the same answers.
        let width = 7;
        for left in [true, false] {
            let mut flat = Vec::new();
            for p in &prompts {
                let pad = vec![0; width - p.len()];
                if left {
                    flat.extend(pad.iter().chain(p));
                } else {
                    flat.extend(p.iter().chain(&pad));
                }
            }
            let padded =
                generate_greedy_padded(&m, &flat, prompts.len(), 0, config, &dev()).unwrap();
            assert_eq!(padded, cached, "{spec} padded left={left}");
        }
    }
}

#[test]
fn decoding_errors_name_the_problem() {
    let m = model::<Cpu>("mamba,attention", PositionEncoding::None, NormKind::Rms);
    let cfg = GenerateConfig::new(3);
    // The index of the empty prompt, not the first one: a check of `prompts[0]` only would miss it.
    let err = generate_greedy(&m, &[vec![1], vec![]], cfg, &dev()).unwrap_err();
    assert!(
        matches!(&err, SeqError::InvalidConfig(msg) if msg.contains("prompt 1 is empty")),
        "{err:?}"
    );
    // Id V itself is out (an off-by-one `id > V` check would let it through to the embedding).
    let err = m.forward(ids(&[vec![1, VOCAB as u32]])).unwrap_err();
    assert!(
        matches!(&err, SeqError::TokenOutOfRange { id, vocab_size: VOCAB, .. } if *id == VOCAB as i64),
        "{err:?}"
    );
    // A state made for another batch size: expected is the state's batch, got the input's.
    let state = m.init_state(2, &dev());
    let err = m.forward_with_state(ids(&[vec![1, 2]]), state).unwrap_err();
    assert!(
        matches!(
            &err,
            SeqError::ShapeMismatch { what, expected, got }
                if what.contains("batch size") && expected == "2" && got == "1"
        ),
        "{err:?}"
    );
    // A learned table shorter than the sequence: a typed error with the table's capacity and the
    // length asked for (clamping to the last row, the other policy, would return Ok).
    let short = model::<Cpu>("attention", PositionEncoding::learned(4), NormKind::Rms);
    let err = short.forward(ids(&tokens(1, 5, 0))).unwrap_err();
    assert_eq!(
        err,
        SeqError::SequenceTooLong {
            what: "learned position table",
            len: 5,
            max: 4
        }
    );
}

/// The tensor-op paths, selected by the backend **type** `NdArray<f64>`: the crate routes each
/// fused operation by the backend's `TypeId`, so on this type every operation runs its
/// Burn tensor-op body while `NdArray<f32>` runs the Rust kernels; with the same weights the two
/// agree, in a full forward and in one decoding step with state.
///
/// This is **not** an f64 computation, and cannot be one in this process. `NdArray<f32>` and
/// `NdArray<f64>` share the device `NdArrayDevice::Cpu`, and Burn 0.21 keeps one default float
/// dtype per device and process, settled by the first tensor created without a dtype: here the
/// f32 model built first settles it as f32. From then on a tensor the f64-typed backend creates
/// without a dtype is f32: `copy_params`' parameters, and the tensors the crate itself creates
/// (RoPE and sinusoidal tables, attention masks, the LSTM's zero state, Mamba's state). Giving
/// the parameters an explicit `DType::F64` does not help: the crate's own f32 tensors then meet
/// them and burn-ndarray panics on the dtype mismatch, which the test checks for every case. So
/// it asserts what it really compares, f32 tensor ops against f32 kernels; the f64 references of
/// the backward passes are in `reference_f64.rs`, written in plain tensor ops with explicit
/// dtypes.
#[test]
fn tensor_op_paths_agree_with_the_cpu_kernels() {
    type F64 = burn_ndarray::NdArray<f64>;
    let rows = tokens(2, 10, 5);
    for (spec, position, norm) in cases() {
        let m32 = model::<Cpu>(spec, position.clone(), norm);
        let m64 = copy_params(&m32, model::<F64>(spec, position.clone(), norm));
        let a = values(m32.forward(ids(&rows)).unwrap());
        let out = m64.forward(ids::<F64>(&rows)).unwrap();
        // What this compares: f32 values on the f64 backend type (see the doc comment).
        assert_eq!(
            out.dtype(),
            DType::F32,
            "{spec}: the NdArray<f64> model's dtype"
        );
        let b: Vec<f32> = out.into_data().convert::<f32>().to_vec().unwrap();
        let diff = max_abs_diff(&a, &b);
        assert!(
            diff <= 2e-5,
            "{spec} {position:?}: f32 kernels vs f32 tensor ops: {diff:e}"
        );
        // True f64 fails on the crate's own default-dtype (f32) tensors, as documented above.
        let true_f64 = m64.clone().map(&mut ToF64);
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            true_f64.forward(ids::<F64>(&rows)).map(|y| y.dtype())
        }));
        let message = run.map(|r| format!("{r:?}")).unwrap_or_else(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        });
        assert!(
            message.contains("ata type mismatch"),
            "{spec} {position:?}: an explicitly f64 model now gives {message}; the crate \
             creates its tensors in the parameters' dtype, so make this test compute in f64"
        );
        // Decoding with state on the second backend too.
        let s64 = m64.init_state(2, &Default::default());
        let (step, _) = m64
            .forward_with_state(
                ids::<F64>(&[rows[0][..1].to_vec(), rows[1][..1].to_vec()]),
                s64,
            )
            .unwrap();
        let step: Vec<f32> = step.into_data().convert::<f32>().to_vec().unwrap();
        let v = VOCAB;
        let first: Vec<f32> = (0..2)
            .flat_map(|b| a[b * 10 * v..b * 10 * v + v].to_vec())
            .collect();
        assert!(
            max_abs_diff(&step, &first) <= 2e-5,
            "{spec}: tensor-op step"
        );
    }
}

/// Every float parameter re-created with an explicit `DType::F64`.
struct ToF64;

impl ModuleMapper<burn_ndarray::NdArray<f64>> for ToF64 {
    fn map_float<const D: usize>(
        &mut self,
        param: Param<Tensor<burn_ndarray::NdArray<f64>, D>>,
    ) -> Param<Tensor<burn_ndarray::NdArray<f64>, D>> {
        param.map(|t| {
            let data = t.into_data().convert::<f64>();
            Tensor::from_data(data, (&Default::default(), DType::F64))
        })
    }
}
