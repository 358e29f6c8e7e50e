//! Every layer on `Wgpu` (f32) against the same layer with the same parameters on
//! `NdArray<f64>`: attention with every positional encoding and mask, Mamba (forward with each
//! scan, step-by-step inference, chunked prefill), the LSTM, a mixed stack, one training step's
//! loss and gradients (`Autodiff<Wgpu>` against `Autodiff<NdArray<f64>>`), and cached greedy
//! generation.
//!
//! # Same parameters
//! Each model is built on `Wgpu` and its float parameters are copied, in visiting order, into
//! the same model built on `NdArray<f64>` ([`copy_params`]); the inputs are drawn from a local
//! RNG and rounded to f32 first. Both backends therefore start from bit-identical numbers, and
//! the f64 reference's own rounding (~1e-16) is negligible: what is measured is the f32 error of
//! the wgpu path (its kernels, including the CubeCL selective scan, and Burn's tensor ops there).
//!
//! # The reference really computes in f64
//! On `NdArray<f64>` the crate routes every fused op to its Burn tensor-op body. `NdArray<f32>`
//! and `NdArray<f64>` share one device and Burn 0.21 keeps one default float dtype per device and
//! process (see `seqlayers::backend`); this binary only uses `NdArray<f64>` on the CPU, so the
//! first tensor created settles the default as f64 and the tensors the crate creates itself
//! (masks, RoPE tables, states) are f64 too. [`cpu`] checks that, and [`ref_values`] checks the
//! dtype of every reference value read.
//!
//! # Tolerances
//! The comparison is norm-wise: `max |wgpu − f64| ≤ tol · max |f64|` ([`assert_close`]), and a
//! zero reference fails (it would check nothing). With u = 2⁻²⁴ ≈ 6e-8 the f32 unit roundoff,
//! a value computed through `depth` operations that each round once or sum `n` terms is off by
//! at most about `c · depth · n · u` relative to the data's scale (`c` ≤ 4 for random O(1) data,
//! as derived in `tests/suite/reference_f64.rs`); the GPU's transcendental functions (`exp`,
//! `tanh`, `ln` on lavapipe: a few ulp) add a few `u` per application.
//! - [`FWD`] = 1e-4 for forwards: one layer, or a stack of four blocks, has depth ≲ 30 with
//!   sums of n ≤ 32 terms (widths ≤ 32, lengths ≤ 16): 4 · 30 · 32 · u ≈ 2.3e-4 is the worst
//!   case; random signs make it √n-like in practice, and 1e-4 is what the norm-wise errors of
//!   such chains come to at most. A wrong mask, a missing position shift, a wrong scan or state
//!   hand-over gives errors of 1e-2 to 1.
//! - [`GRAD`] = 1e-3 for gradients: the backward pass runs the chain once more in reverse
//!   (depth doubled) through several blocks, and each weight gradient sums over `B · L` = 24
//!   rows; 1e-3 stays well below the 1e-2 … 1 of a wrong backward.
//!
//! Every check prints its measured relative error, so the margin is visible in `--nocapture`
//! runs.

use burn::backend::Autodiff;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::nn::{LstmConfig, LstmState};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Bool, DType, Element, Int, Tensor, TensorData};
use burn_ndarray::{NdArray, NdArrayDevice};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use seqlayers::attention::{AttentionConfig, AttentionInput, CausalMasking, MultiHeadAttention};
use seqlayers::attention::{QkvProjection, QkvSharing, Similarity};
use seqlayers::backend::{Wgpu, WgpuAutodiff};
use seqlayers::decode::{Decoder, GenerateConfig, generate_greedy};
use seqlayers::lstm::lstm_forward;
use seqlayers::model::{LanguageModel, LanguageModelConfig};
use seqlayers::nn::NormKind;
use seqlayers::position::{AbsolutePosition, PositionEncoding};
use seqlayers::ssm::{Discretization, Mamba, MambaConfig, MambaState, ScanKind};
use seqlayers::stack::{SequenceStack, StackConfig, parse_layers};

use crate::gpu;

/// The reference backend.
type Ref = NdArray<f64>;
/// The reference backend with autodiff.
type RefAd = Autodiff<Ref>;

/// Relative tolerance of forward values (module docs).
const FWD: f64 = 1e-4;
/// Relative tolerance of gradients (module docs).
const GRAD: f64 = 1e-3;

/// The CPU device of the reference, after checking that its default float dtype is f64 (the
/// crate's own tensors on `NdArray<f64>` are created in that dtype).
fn cpu() -> NdArrayDevice {
    let device = NdArrayDevice::default();
    let probe = Tensor::<Ref, 1>::zeros([1], &device);
    assert_eq!(
        probe.dtype(),
        DType::F64,
        "the CPU device's default float dtype was settled as f32 by an NdArray<f32> tensor in \
         this process: the NdArray<f64> reference would compute in f32"
    );
    device
}

/// The float dtype of backend `B`.
fn dtype_of<B: Backend>() -> DType {
    <B::FloatElem as Element>::dtype()
}

/// A tensor of `B`'s own float dtype holding `v` (explicit dtype: see the module docs).
fn tensor<B: Backend, const D: usize>(
    v: &[f64],
    shape: [usize; D],
    device: &B::Device,
) -> Tensor<B, D> {
    let data = TensorData::new(v.to_vec(), shape).convert_dtype(dtype_of::<B>());
    Tensor::from_data(data, (device, dtype_of::<B>()))
}

/// A boolean tensor `[B, L]` (`true` = padding).
fn mask<B: Backend>(flags: &[bool], shape: [usize; 2], device: &B::Device) -> Tensor<B, 2, Bool> {
    Tensor::from_data(TensorData::new(flags.to_vec(), shape), device)
}

/// Token ids `[B, L]`.
fn ids<B: Backend>(rows: &[Vec<u32>], device: &B::Device) -> Tensor<B, 2, Int> {
    let flat: Vec<i64> = rows.iter().flatten().map(|&t| t as i64).collect();
    Tensor::from_data(TensorData::new(flat, [rows.len(), rows[0].len()]), device)
}

/// `n` values uniform in `(−scale, scale)`, rounded to f32 (so both backends get them exactly).
fn uniform(rng: &mut StdRng, n: usize, scale: f64) -> Vec<f64> {
    (0..n)
        .map(|_| rng.random_range(-scale..scale) as f32 as f64)
        .collect()
}

/// The same values on both backends: `(wgpu, reference)`.
fn pair<const D: usize>(v: &[f64], shape: [usize; D]) -> (Tensor<Wgpu, D>, Tensor<Ref, D>) {
    (tensor(v, shape, &gpu()), tensor(v, shape, &cpu()))
}

/// The values of a wgpu tensor (which must be f32).
fn gpu_values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    assert_eq!(t.dtype(), DType::F32, "a wgpu value in another dtype");
    t.into_data().convert::<f64>().to_vec::<f64>().unwrap()
}

/// The values of a reference tensor (which must be f64).
fn ref_values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    assert_eq!(
        t.dtype(),
        DType::F64,
        "a reference value computed in another dtype"
    );
    t.into_data().to_vec::<f64>().unwrap()
}

/// `max |got − want| ≤ tol · max |want|`; prints and returns the relative error.
fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let scale = want.iter().fold(0.0f64, |m, w| m.max(w.abs()));
    assert!(
        scale > 1e-9,
        "{what}: the reference is zero, so this comparison would check nothing"
    );
    let err = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0f64, |m, e| if e.is_nan() { f64::NAN } else { m.max(e) });
    let rel = err / scale;
    eprintln!("{what}: max |wgpu − f64| / max |f64| = {rel:.2e} (tolerance {tol:.0e})");
    assert!(
        rel.is_finite() && rel <= tol,
        "{what}: max |wgpu − f64| = {err:.3e} > {tol:.0e} · max |f64| = {:.3e}",
        tol * scale
    );
    rel
}

/// [`assert_close`] of two tensors (wgpu f32, reference f64) of the same shape.
fn check<B1: Backend, B2: Backend, const D: usize>(
    what: &str,
    got: Tensor<B1, D>,
    want: Tensor<B2, D>,
    tol: f64,
) -> f64 {
    assert_eq!(got.dims(), want.dims(), "{what}: shapes differ");
    assert_close(what, &gpu_values(got), &ref_values(want), tol)
}

/// Every float parameter of `module`, in visiting order: `(shape, values)`.
fn parameters<B: Backend, M: Module<B>>(module: &M) -> Vec<(Vec<usize>, Vec<f64>)> {
    struct Collect(Vec<(Vec<usize>, Vec<f64>)>);
    impl<B: Backend> ModuleVisitor<B> for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let t = param.val();
            let shape = t.dims().to_vec();
            let v = t.into_data().convert::<f64>().to_vec::<f64>().unwrap();
            self.0.push((shape, v));
        }
    }
    let mut c = Collect(Vec::new());
    module.visit(&mut c);
    c.0
}

/// `to` (same structure as `from`, any backend) with every float parameter of `from`, in
/// visiting order, created in `to`'s own float dtype; ids and gradient requirements are kept.
fn copy_params<B1: Backend, B2: Backend, M1: Module<B1>, M2: Module<B2>>(from: &M1, to: M2) -> M2 {
    struct Replace(std::vec::IntoIter<(Vec<usize>, Vec<f64>)>);
    impl<B: Backend> ModuleMapper<B> for Replace {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (shape, values) = self.0.next().expect("the same number of parameters");
            let (id, old, mapper) = param.consume();
            assert_eq!(old.dims().to_vec(), shape, "the same parameter shapes");
            let shape: [usize; D] = shape.try_into().unwrap();
            let require_grad = old.is_require_grad();
            let new = tensor::<B, D>(&values, shape, &old.device()).set_require_grad(require_grad);
            Param::from_mapped_value(id, new, mapper)
        }
    }
    let params = parameters::<B1, M1>(from);
    let n = params.len();
    assert!(n > 0, "a module without parameters");
    let mut replace = Replace(params.into_iter());
    let to = to.map(&mut replace);
    assert!(replace.0.next().is_none(), "the same number of parameters");
    to
}

/// The gradient of every float parameter of `module` (visiting order), `None` where it has none.
fn gradients<B: AutodiffBackend, M: Module<B>>(
    module: &M,
    grads: &B::Gradients,
) -> Vec<Option<Vec<f64>>> {
    struct Collect<'a, B: AutodiffBackend>(&'a B::Gradients, Vec<Option<Vec<f64>>>);
    impl<B: AutodiffBackend> ModuleVisitor<B> for Collect<'_, B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let g = param.val().grad(self.0).map(|g| {
                let dtype = g.dtype();
                (
                    dtype,
                    g.into_data().convert::<f64>().to_vec::<f64>().unwrap(),
                )
            });
            self.1.push(g.map(|(dtype, v)| {
                assert!(matches!(dtype, DType::F32 | DType::F64));
                v
            }));
        }
    }
    let mut c = Collect::<B>(grads, Vec::new());
    module.visit(&mut c);
    c.1
}

// ---------------------------------------------------------------------------------------------
// Attention
// ---------------------------------------------------------------------------------------------

/// `config`'s attention layer on both backends with the same parameters.
fn attention_pair(config: &AttentionConfig) -> (MultiHeadAttention<Wgpu>, MultiHeadAttention<Ref>) {
    let g = config.try_init::<Wgpu>(&gpu()).unwrap();
    let r = copy_params(&g, config.try_init::<Ref>(&cpu()).unwrap());
    (g, r)
}

/// `encoding`'s absolute encoding on both backends (same learned table), `None` for relative
/// kinds and NoPE.
fn absolute_pair(
    encoding: &PositionEncoding,
    d: usize,
) -> Option<(AbsolutePosition<Wgpu>, AbsolutePosition<Ref>)> {
    if !encoding.is_absolute() {
        return None;
    }
    let g = encoding.init_absolute::<Wgpu>(d, &gpu()).unwrap();
    let r = encoding.init_absolute::<Ref>(d, &cpu()).unwrap();
    let r = if g.table.is_some() {
        copy_params(&g, r)
    } else {
        r
    };
    Some((g, r))
}

/// Self-attention with every positional encoding (absolute ones added to the input at an offset,
/// as a model does; relative ones inside the layer) and every causal masking: unmasked,
/// causal before the softmax, and the naive post-softmax ablation.
#[test]
fn attention_matches_f64_for_every_position_encoding_and_causal_mask() {
    let (b, l, d, h) = (2, 9, 16, 4);
    let mut rng = StdRng::seed_from_u64(1);
    let x = uniform(&mut rng, b * l * d, 1.0);
    let encodings = [
        PositionEncoding::None,
        PositionEncoding::learned(16),
        PositionEncoding::sinusoidal(),
        PositionEncoding::rope(),
        PositionEncoding::alibi(),
        PositionEncoding::hard_alibi(1),
        PositionEncoding::hard_alibi(3),
    ];
    for position in encodings {
        for (causal, masking) in [
            (false, CausalMasking::PreSoftmax),
            (true, CausalMasking::PreSoftmax),
            (true, CausalMasking::NaivePostSoftmax),
        ] {
            let config = AttentionConfig::new(d, h)
                .with_position(position.clone())
                .with_causal(causal)
                .with_masking(masking);
            let (g, r) = attention_pair(&config);
            let (mut xg, mut xr) = pair(&x, [b, l, d]);
            if let Some((pg, pr)) = absolute_pair(&position, d) {
                // Offset 3: the rows PE[3 .. 3 + L].
                xg = pg.try_forward(xg, 3).unwrap();
                xr = pr.try_forward(xr, 3).unwrap();
                check(
                    &format!("{} encoding", position.name()),
                    xg.clone(),
                    xr.clone(),
                    FWD,
                );
            }
            check(
                &format!("attention {} causal={causal} {masking:?}", position.name()),
                g.forward(xg),
                r.forward(xr),
                FWD,
            );
        }
    }
}

/// Key padding (self-attention, with and without the causal mask, with ALiBi and RoPE),
/// cross-attention with a padded context, cross-attention over cached keys/values, and the
/// attention weights themselves.
#[test]
fn attention_matches_f64_with_padding_and_cross_attention_masks() {
    let (b, l, lk, d, h) = (2, 8, 11, 16, 4);
    let mut rng = StdRng::seed_from_u64(2);
    let x = uniform(&mut rng, b * l * d, 1.0);
    let ctx = uniform(&mut rng, b * lk * d, 1.0);
    // Row 0 unpadded, row 1 with its last 3 positions padded (never a fully masked row).
    let pad_self: Vec<bool> = (0..b * l).map(|p| p / l == 1 && p % l >= l - 3).collect();
    let pad_ctx: Vec<bool> = (0..b * lk)
        .map(|p| p / lk == 1 && p % lk >= lk - 4)
        .collect();
    for (position, causal) in [
        (PositionEncoding::None, false),
        (PositionEncoding::None, true),
        (PositionEncoding::alibi(), true),
        (PositionEncoding::rope(), false),
        (PositionEncoding::hard_alibi(2), true),
    ] {
        let config = AttentionConfig::new(d, h)
            .with_position(position.clone())
            .with_causal(causal);
        let (g, r) = attention_pair(&config);
        let tag = format!("{} causal={causal}", position.name());
        let (xg, xr) = pair(&x, [b, l, d]);
        let input_g = AttentionInput::self_attention(xg.clone()).padding(mask::<Wgpu>(
            &pad_self,
            [b, l],
            &gpu(),
        ));
        let input_r = AttentionInput::self_attention(xr.clone()).padding(mask::<Ref>(
            &pad_self,
            [b, l],
            &cpu(),
        ));
        check(
            &format!("padded self-attention {tag}"),
            g.attend(input_g.clone()),
            r.attend(input_r.clone()),
            FWD,
        );
        let (yg, wg) = g.attend_with_weights(input_g).unwrap();
        let (yr, wr) = r.attend_with_weights(input_r).unwrap();
        check(
            &format!("padded self-attention {tag} (weights path)"),
            yg,
            yr,
            FWD,
        );
        check(&format!("attention weights {tag}"), wg, wr, FWD);
    }

    // Cross-attention: queries [B, L, D] over a padded context [B, Lk, D].
    let (g, r) = attention_pair(&AttentionConfig::new(d, h));
    let (xg, xr) = pair(&x, [b, l, d]);
    let (cg, cr) = pair(&ctx, [b, lk, d]);
    let (mg, mr) = (
        mask::<Wgpu>(&pad_ctx, [b, lk], &gpu()),
        mask::<Ref>(&pad_ctx, [b, lk], &cpu()),
    );
    check(
        "cross-attention, padded context",
        g.attend(AttentionInput::cross(xg.clone(), cg.clone()).padding(mg.clone())),
        r.attend(AttentionInput::cross(xr.clone(), cr.clone()).padding(mr.clone())),
        FWD,
    );
    let kv_g = g.cross_keys_values(cg, Some(mg)).unwrap();
    let kv_r = r.cross_keys_values(cr, Some(mr)).unwrap();
    check(
        "cross-attention over cached keys/values",
        g.attend(AttentionInput::cached(xg, kv_g)),
        r.attend(AttentionInput::cached(xr, kv_r)),
        FWD,
    );
}

/// The ablation switches that change the score computation or the projections: Q/K/V sharing,
/// the other similarities, MLP projections.
#[test]
fn attention_ablations_match_f64() {
    let (b, l, d, h) = (2, 7, 16, 2);
    let mut rng = StdRng::seed_from_u64(3);
    let x = uniform(&mut rng, b * l * d, 1.0);
    let configs = [
        AttentionConfig::new(d, h)
            .with_causal(true)
            .with_sharing(QkvSharing::SharedQK),
        AttentionConfig::new(d, h)
            .with_causal(true)
            .with_sharing(QkvSharing::SharedQKV)
            .with_position(PositionEncoding::rope()),
        AttentionConfig::new(d, h)
            .with_causal(true)
            .with_similarity(Similarity::NegSquaredDistance),
        AttentionConfig::new(d, h)
            .with_causal(true)
            .with_similarity(Similarity::Cosine { temperature: 0.1 }),
        AttentionConfig::new(d, h)
            .with_causal(true)
            .with_qkv_projection(QkvProjection::Mlp { d_hidden: 8 }),
    ];
    for config in configs {
        let tag = format!(
            "{:?} {:?} {:?}",
            config.sharing, config.similarity, config.qkv_projection
        );
        let (g, r) = attention_pair(&config);
        let (xg, xr) = pair(&x, [b, l, d]);
        check(
            &format!("attention {tag}"),
            g.forward(xg),
            r.forward(xr),
            FWD,
        );
    }
}

/// Incremental decoding with a `KvCache` (chunks 1, 4, 1, 3 of 9 tokens) for every relative
/// encoding: each chunk's output against the reference's.
#[test]
fn attention_kv_cache_decoding_matches_f64() {
    let (b, l, d, h) = (2, 9, 16, 4);
    let mut rng = StdRng::seed_from_u64(4);
    let x = uniform(&mut rng, b * l * d, 1.0);
    for position in [
        PositionEncoding::None,
        PositionEncoding::rope(),
        PositionEncoding::alibi(),
        PositionEncoding::hard_alibi(2),
    ] {
        let config = AttentionConfig::new(d, h)
            .with_position(position.clone())
            .with_causal(true);
        let (g, r) = attention_pair(&config);
        let (xg, xr) = pair(&x, [b, l, d]);
        let (mut cache_g, mut cache_r) = (g.init_state(b, &gpu()), r.init_state(b, &cpu()));
        let mut start = 0;
        for len in [1, 4, 1, 3] {
            let (yg, next_g) = g
                .forward_with_state(xg.clone().narrow(1, start, len), cache_g)
                .unwrap();
            let (yr, next_r) = r
                .forward_with_state(xr.clone().narrow(1, start, len), cache_r)
                .unwrap();
            check(
                &format!(
                    "cached attention {} tokens {start}..{}",
                    position.name(),
                    start + len
                ),
                yg,
                yr,
                FWD,
            );
            (cache_g, cache_r) = (next_g, next_r);
            start += len;
        }
        assert_eq!((cache_g.len(), cache_r.len()), (l, l));
    }
}

// ---------------------------------------------------------------------------------------------
// Mamba
// ---------------------------------------------------------------------------------------------

const MAMBA_D: usize = 8;

fn mamba_config(scan: ScanKind, disc: Discretization) -> MambaConfig {
    MambaConfig::new(MAMBA_D)
        .with_d_state(4)
        .with_dt_min(0.01)
        .with_dt_max(0.5)
        .with_scan(scan)
        .with_discretization(disc)
}

fn mamba_pair(config: &MambaConfig) -> (Mamba<Wgpu>, Mamba<Ref>) {
    let g = config.try_init::<Wgpu>(&gpu()).unwrap();
    let r = copy_params(&g, config.try_init::<Ref>(&cpu()).unwrap());
    (g, r)
}

fn check_state(what: &str, g: &MambaState<Wgpu>, r: &MambaState<Ref>) {
    check(
        &format!("{what}: conv state"),
        g.conv.clone(),
        r.conv.clone(),
        FWD,
    );
    check(
        &format!("{what}: ssm state"),
        g.ssm.clone(),
        r.ssm.clone(),
        FWD,
    );
}

/// The scans exercised on wgpu: the default (`Fused`, the CubeCL kernel there) and the
/// tensor-op scans.
const SCANS: [ScanKind; 4] = [
    ScanKind::Fused,
    ScanKind::Sequential,
    ScanKind::Parallel,
    ScanKind::LogSpace,
];

/// The full forward pass (output and final state) for each scan and discretization, a padded
/// forward, and the residual Mamba block.
#[test]
fn mamba_forward_matches_f64_for_every_scan() {
    let (b, l) = (2, 13);
    let mut rng = StdRng::seed_from_u64(5);
    let x = uniform(&mut rng, b * l * MAMBA_D, 1.0);
    assert_eq!(ScanKind::default(), ScanKind::Fused, "the default scan");
    for scan in SCANS {
        // Every discretization with the default scan, the default discretization otherwise.
        let discs = if scan == ScanKind::Fused {
            vec![
                Discretization::Simplified,
                Discretization::ZeroOrderHold,
                Discretization::bilinear(),
            ]
        } else {
            vec![Discretization::Simplified]
        };
        for disc in discs {
            let (g, r) = mamba_pair(&mamba_config(scan, disc));
            let (xg, xr) = pair(&x, [b, l, MAMBA_D]);
            let tag = format!("mamba {scan:?} {disc:?}");
            check(&tag, g.forward(xg.clone()), r.forward(xr.clone()), FWD);
            let (yg, sg) = g.forward_with_state(xg, g.init_state(b, &gpu())).unwrap();
            let (yr, sr) = r.forward_with_state(xr, r.init_state(b, &cpu())).unwrap();
            check(&format!("{tag} forward_with_state"), yg, yr, FWD);
            check_state(&tag, &sg, &sr);
        }
    }

    // Padding: row 1's last 4 positions padded (identity steps, zero output).
    let pads: Vec<bool> = (0..b * l).map(|p| p / l == 1 && p % l >= l - 4).collect();
    for scan in [ScanKind::Fused, ScanKind::Sequential] {
        let (g, r) = mamba_pair(&mamba_config(scan, Discretization::Simplified));
        let (xg, xr) = pair(&x, [b, l, MAMBA_D]);
        let (yg, sg) = g
            .forward_padded(
                xg,
                g.init_state(b, &gpu()),
                mask::<Wgpu>(&pads, [b, l], &gpu()),
            )
            .unwrap();
        let (yr, sr) = r
            .forward_padded(
                xr,
                r.init_state(b, &cpu()),
                mask::<Ref>(&pads, [b, l], &cpu()),
            )
            .unwrap();
        let tag = format!("mamba {scan:?} padded");
        check(&tag, yg, yr, FWD);
        check_state(&tag, &sg, &sr);
    }

    // The residual block (norm + mixer).
    let config = mamba_config(ScanKind::Fused, Discretization::Simplified);
    let g = config.try_init_block::<Wgpu>(&gpu()).unwrap();
    let r = copy_params(&g, config.try_init_block::<Ref>(&cpu()).unwrap());
    let (xg, xr) = pair(&x, [b, l, MAMBA_D]);
    check("mamba block", g.forward(xg), r.forward(xr), FWD);
}

/// Recurrent inference: a prefill of 5 tokens with `forward_with_state`, then 7 single-token
/// `step`s; every step's output and the state after each phase, against the reference doing
/// the same (and the final state against the reference's full pass).
#[test]
fn mamba_step_by_step_inference_matches_f64() {
    let (b, l, pre) = (2, 12, 5);
    let mut rng = StdRng::seed_from_u64(6);
    let x = uniform(&mut rng, b * l * MAMBA_D, 1.0);
    for scan in [ScanKind::Fused, ScanKind::Sequential] {
        for disc in [Discretization::Simplified, Discretization::ZeroOrderHold] {
            let (g, r) = mamba_pair(&mamba_config(scan, disc));
            let (xg, xr) = pair(&x, [b, l, MAMBA_D]);
            let tag = format!("mamba {scan:?} {disc:?}");
            let (yg, mut sg) = g
                .forward_with_state(xg.clone().narrow(1, 0, pre), g.init_state(b, &gpu()))
                .unwrap();
            let (yr, mut sr) = r
                .forward_with_state(xr.clone().narrow(1, 0, pre), r.init_state(b, &cpu()))
                .unwrap();
            check(&format!("{tag} prefill"), yg, yr, FWD);
            check_state(&format!("{tag} after prefill"), &sg, &sr);
            for t in pre..l {
                let xt_g = xg.clone().narrow(1, t, 1).reshape([b, MAMBA_D]);
                let xt_r = xr.clone().narrow(1, t, 1).reshape([b, MAMBA_D]);
                let (yg, next_g) = g.step(xt_g, sg).unwrap();
                let (yr, next_r) = r.step(xt_r, sr).unwrap();
                check(&format!("{tag} step {t}"), yg, yr, FWD);
                (sg, sr) = (next_g, next_r);
            }
            check_state(&format!("{tag} after the steps"), &sg, &sr);
            let (_, s_full) = r.forward_with_state(xr, r.init_state(b, &cpu())).unwrap();
            check_state(&format!("{tag} steps vs one f64 pass"), &sg, &s_full);
        }
    }
    // Every step from the empty state, through the block.
    let config = mamba_config(ScanKind::Fused, Discretization::Simplified);
    let g = config.try_init_block::<Wgpu>(&gpu()).unwrap();
    let r = copy_params(&g, config.try_init_block::<Ref>(&cpu()).unwrap());
    let (xg, xr) = pair(&x, [b, l, MAMBA_D]);
    let (mut sg, mut sr) = (g.init_state(b, &gpu()), r.init_state(b, &cpu()));
    let (mut outs_g, mut outs_r) = (Vec::new(), Vec::new());
    for t in 0..l {
        let (yg, next_g) = g
            .step(xg.clone().narrow(1, t, 1).reshape([b, MAMBA_D]), sg)
            .unwrap();
        let (yr, next_r) = r
            .step(xr.clone().narrow(1, t, 1).reshape([b, MAMBA_D]), sr)
            .unwrap();
        outs_g.push(yg.unsqueeze_dim::<3>(1));
        outs_r.push(yr.unsqueeze_dim::<3>(1));
        (sg, sr) = (next_g, next_r);
    }
    let steps_g = Tensor::cat(outs_g, 1);
    check(
        "mamba block, every step",
        steps_g.clone(),
        Tensor::cat(outs_r, 1),
        FWD,
    );
    check(
        "mamba block steps vs one f64 forward",
        steps_g,
        r.forward(xr),
        FWD,
    );
}

/// Chunked prefill on wgpu (chunks shorter than the conv window included) against one full f64
/// forward pass: the outputs concatenated and the final state.
#[test]
fn mamba_chunked_prefill_matches_f64() {
    let (b, l) = (2, 16);
    let mut rng = StdRng::seed_from_u64(7);
    let x = uniform(&mut rng, b * l * MAMBA_D, 1.0);
    for scan in [ScanKind::Fused, ScanKind::Sequential] {
        let (g, r) = mamba_pair(&mamba_config(scan, Discretization::ZeroOrderHold));
        let (xg, xr) = pair(&x, [b, l, MAMBA_D]);
        let (y_full, s_full) = r.forward_with_state(xr, r.init_state(b, &cpu())).unwrap();
        for cuts in [vec![8], vec![1, 3, 5, 12], vec![2, 4, 6, 8, 10, 12, 14]] {
            let mut state = g.init_state(b, &gpu());
            let mut ys = Vec::new();
            let mut start = 0;
            for end in cuts.iter().copied().chain([l]) {
                let (y, s) = g
                    .forward_with_state(xg.clone().narrow(1, start, end - start), state)
                    .unwrap();
                ys.push(y);
                state = s;
                start = end;
            }
            let tag = format!("mamba {scan:?} chunks {cuts:?}");
            check(&tag, Tensor::cat(ys, 1), y_full.clone(), FWD);
            check_state(&tag, &state, &s_full);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// LSTM
// ---------------------------------------------------------------------------------------------

/// The crate's LSTM (`lstm_forward`) from a zero and from a given state: hidden states, last
/// hidden and last cell.
#[test]
fn lstm_matches_f64() {
    let (b, l, d, hd) = (2, 11, 8, 12);
    let mut rng = StdRng::seed_from_u64(8);
    let x = uniform(&mut rng, b * l * d, 1.0);
    let c0 = uniform(&mut rng, b * hd, 1.0);
    let h0 = uniform(&mut rng, b * hd, 1.0);
    for bias in [true, false] {
        let config = LstmConfig::new(d, hd, bias);
        let g = config.init::<Wgpu>(&gpu());
        let r = copy_params(&g, config.init::<Ref>(&cpu()));
        for with_state in [false, true] {
            let (xg, xr) = pair(&x, [b, l, d]);
            let (sg, sr) = if with_state {
                let (cg, cr) = pair(&c0, [b, hd]);
                let (hg, hr) = pair(&h0, [b, hd]);
                (Some(LstmState::new(cg, hg)), Some(LstmState::new(cr, hr)))
            } else {
                (None, None)
            };
            let (yg, lg) = lstm_forward(&g, xg, sg);
            let (yr, lr) = lstm_forward(&r, xr, sr);
            let tag = format!("lstm bias={bias} state={with_state}");
            check(&format!("{tag}: hidden states"), yg, yr, FWD);
            check(&format!("{tag}: last hidden"), lg.hidden, lr.hidden, FWD);
            check(&format!("{tag}: last cell"), lg.cell, lr.cell, FWD);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Stack
// ---------------------------------------------------------------------------------------------

fn stack_config(spec: &str, position: PositionEncoding, norm: NormKind) -> StackConfig {
    StackConfig::new(16, parse_layers(spec).unwrap())
        .with_n_heads(2)
        .with_position(position)
        .with_norm(norm)
        .with_mamba(MambaConfig::new(16).with_d_state(4))
}

/// A mixed stack (every layer kind, with MLP sublayers): the full forward, chunked forward with
/// state and single steps.
#[test]
fn stack_matches_f64() {
    let (b, l, d) = (2, 10, 16);
    let mut rng = StdRng::seed_from_u64(9);
    let x = uniform(&mut rng, b * l * d, 1.0);
    for (spec, position, norm) in [
        (
            "mamba,attention+mlp,lstm,linear-attention+mlp",
            PositionEncoding::rope(),
            NormKind::Rms,
        ),
        (
            "mamba+mlp,attention",
            PositionEncoding::alibi(),
            NormKind::Layer,
        ),
    ] {
        let config = stack_config(spec, position, norm);
        let g: SequenceStack<Wgpu> = config.try_init(&gpu()).unwrap();
        let r: SequenceStack<Ref> = copy_params(&g, config.try_init(&cpu()).unwrap());
        let (xg, xr) = pair(&x, [b, l, d]);
        let full_r = r.forward(xr.clone());
        check(
            &format!("stack {spec}"),
            g.forward(xg.clone()),
            full_r.clone(),
            FWD,
        );
        // Chunks 4 + 3, then 3 single steps, on both.
        let (mut sg, mut sr) = (g.init_state(b, &gpu()), r.init_state(b, &cpu()));
        let (mut outs_g, mut outs_r) = (Vec::new(), Vec::new());
        let mut start = 0;
        for len in [4, 3] {
            let (yg, next_g) = g
                .forward_with_state(xg.clone().narrow(1, start, len), sg)
                .unwrap();
            let (yr, next_r) = r
                .forward_with_state(xr.clone().narrow(1, start, len), sr)
                .unwrap();
            outs_g.push(yg);
            outs_r.push(yr);
            (sg, sr) = (next_g, next_r);
            start += len;
        }
        for t in start..l {
            let (yg, next_g) = g
                .step(xg.clone().narrow(1, t, 1).reshape([b, d]), sg)
                .unwrap();
            let (yr, next_r) = r
                .step(xr.clone().narrow(1, t, 1).reshape([b, d]), sr)
                .unwrap();
            outs_g.push(yg.unsqueeze_dim::<3>(1));
            outs_r.push(yr.unsqueeze_dim::<3>(1));
            (sg, sr) = (next_g, next_r);
        }
        let (chunked_g, chunked_r) = (Tensor::cat(outs_g, 1), Tensor::cat(outs_r, 1));
        check(
            &format!("stack {spec}: chunks and steps"),
            chunked_g.clone(),
            chunked_r,
            FWD,
        );
        check(
            &format!("stack {spec}: chunks and steps vs one f64 forward"),
            chunked_g,
            full_r,
            FWD,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Training step
// ---------------------------------------------------------------------------------------------

const VOCAB: usize = 13;

fn lm_config(spec: &str, position: PositionEncoding) -> LanguageModelConfig {
    LanguageModelConfig::new(stack_config(spec, position, NormKind::Rms), VOCAB).with_init_std(0.5)
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

/// Mean next-token cross-entropy of `logits` `[B, L, V]` for the targets `onehot` `[B, L, V]`.
fn lm_loss<B: Backend>(logits: Tensor<B, 3>, onehot: Tensor<B, 3>) -> Tensor<B, 1> {
    let [b, l, _] = logits.dims();
    let logp = burn::tensor::activation::log_softmax(logits, 2);
    (logp * onehot).sum().neg().div_scalar((b * l) as f64)
}

/// One training step of a causal language model over every layer kind: `Autodiff<Wgpu>`
/// against `Autodiff<NdArray<f64>>` with the same weights, the loss and the gradient of every
/// parameter (each must exist on both or on neither).
#[test]
fn training_step_loss_and_gradients_match_f64() {
    let (b, l) = (2, 12);
    let rows = tokens(b, l + 1, 4);
    let inputs: Vec<Vec<u32>> = rows.iter().map(|r| r[..l].to_vec()).collect();
    let mut onehot = vec![0.0; b * l * VOCAB];
    for (bi, row) in rows.iter().enumerate() {
        for t in 0..l {
            onehot[(bi * l + t) * VOCAB + row[t + 1] as usize] = 1.0;
        }
    }
    for (spec, position, scan) in [
        (
            "mamba+mlp,attention+mlp,lstm,linear-attention",
            PositionEncoding::rope(),
            ScanKind::Fused,
        ),
        (
            "mamba,attention",
            PositionEncoding::learned(16),
            ScanKind::Sequential,
        ),
    ] {
        let mut config = lm_config(spec, position);
        config.stack.mamba = config.stack.mamba.clone().with_scan(scan);
        let g: LanguageModel<WgpuAutodiff> = config.try_init(&gpu()).unwrap();
        let r: LanguageModel<RefAd> = copy_params(&g, config.try_init(&cpu()).unwrap());

        let loss_g = lm_loss(
            g.forward(ids(&inputs, &gpu())).unwrap(),
            tensor(&onehot, [b, l, VOCAB], &gpu()),
        );
        let loss_r = lm_loss(
            r.forward(ids(&inputs, &cpu())).unwrap(),
            tensor(&onehot, [b, l, VOCAB], &cpu()),
        );
        let tag = format!("LM {spec} ({scan:?} scan)");
        check(&format!("{tag}: loss"), loss_g.clone(), loss_r.clone(), FWD);
        let grads_g = gradients(&g, &loss_g.backward());
        let grads_r = gradients(&r, &loss_r.backward());
        assert_eq!(grads_g.len(), grads_r.len());
        let mut compared = 0;
        let mut worst = 0.0f64;
        for (i, (gg, gr)) in grads_g.iter().zip(&grads_r).enumerate() {
            match (gg, gr) {
                (Some(gg), Some(gr)) => {
                    worst = worst.max(assert_close(
                        &format!("{tag}: gradient of parameter {i}"),
                        gg,
                        gr,
                        GRAD,
                    ));
                    compared += 1;
                }
                (None, None) => {}
                _ => panic!(
                    "{tag}: parameter {i} has a gradient on one backend only (wgpu: {}, f64: {})",
                    gg.is_some(),
                    gr.is_some()
                ),
            }
        }
        let total = parameters::<WgpuAutodiff, _>(&g).len();
        eprintln!("{tag}: {compared} of {total} parameter gradients compared, worst {worst:.2e}");
        assert!(
            compared >= total - 2,
            "{tag}: most parameters must have gradients"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Cached generation
// ---------------------------------------------------------------------------------------------

/// The index of the largest value, and its margin over the second largest.
fn argmax_margin(v: &[f64]) -> (usize, f64) {
    let best = (0..v.len()).max_by(|&i, &j| v[i].total_cmp(&v[j])).unwrap();
    let second = (0..v.len())
        .filter(|&i| i != best)
        .map(|i| v[i])
        .fold(f64::NEG_INFINITY, f64::max);
    (best, v[best] - second)
}

/// Greedy decoding with a cache (prompt prefill, then one token per call): the logits of every
/// call against the reference's, the same tokens, and `generate_greedy` giving those tokens on
/// both backends.
#[test]
fn cached_greedy_generation_matches_f64() {
    let (b, prompt_len, new) = (2, 5, 6);
    for (spec, position) in [
        ("mamba,attention+mlp", PositionEncoding::rope()),
        ("attention+mlp,lstm", PositionEncoding::learned(16)),
        ("mamba+mlp,attention", PositionEncoding::hard_alibi(1)),
    ] {
        let config = lm_config(spec, position);
        let g: LanguageModel<Wgpu> = config.try_init(&gpu()).unwrap();
        let r: LanguageModel<Ref> = copy_params(&g, config.try_init(&cpu()).unwrap());
        let prompts = tokens(b, prompt_len, 2);
        let (mut sg, mut sr) = (g.init_state(b, &gpu()), r.init_state(b, &cpu()));
        let mut next: Vec<Vec<u32>> = prompts.clone();
        let mut generated = vec![Vec::new(); b];
        for step in 0..new {
            let (lg, next_g) = g.forward_with_state(ids(&next, &gpu()), sg).unwrap();
            let (lr, next_r) = r.forward_with_state(ids(&next, &cpu()), sr).unwrap();
            (sg, sr) = (next_g, next_r);
            let t = lg.dims()[1];
            let (lg, lr) = (lg.narrow(1, t - 1, 1), lr.narrow(1, t - 1, 1));
            let (vg, vr) = (gpu_values(lg), ref_values(lr));
            assert_close(&format!("LM {spec}: logits of call {step}"), &vg, &vr, FWD);
            let scale = vr.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            for bi in 0..b {
                let row = |v: &[f64]| v[bi * VOCAB..(bi + 1) * VOCAB].to_vec();
                let (tok_r, margin) = argmax_margin(&row(&vr));
                let (tok_g, _) = argmax_margin(&row(&vg));
                // A margin below the tolerance would make the comparison a coin toss.
                assert!(
                    margin > 10.0 * FWD * scale,
                    "{spec}: near tie at call {step}, row {bi} (margin {margin:e}); change the seed"
                );
                assert_eq!(
                    tok_g, tok_r,
                    "{spec}: greedy token of call {step}, row {bi}"
                );
                generated[bi].push(tok_r as u32);
            }
            next = generated.iter().map(|g| vec![*g.last().unwrap()]).collect();
        }
        let via_g = generate_greedy(&g, &prompts, GenerateConfig::new(new), &gpu()).unwrap();
        let via_r = generate_greedy(&r, &prompts, GenerateConfig::new(new), &cpu()).unwrap();
        assert_eq!(via_r, generated, "{spec}: generate_greedy on f64");
        assert_eq!(via_g, generated, "{spec}: generate_greedy on wgpu");
        eprintln!("LM {spec}: greedy tokens {generated:?}");
    }
}
