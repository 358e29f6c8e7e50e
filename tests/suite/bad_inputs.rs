//! Bad inputs to the public API (issue 21, item 4): every wrong shape, empty batch or sequence,
//! mismatched mask, out-of-range token id and broken checkpoint gives a typed error (the
//! specific variant is asserted, never a bare `is_err()`), and nothing panics. Non-finite
//! inputs are the documented exception: the layers propagate them (tested) and the opt-in
//! [`ensure_finite`] turns them into [`SeqError::NonFinite`].
//!
//! Ranks are fixed by the types (`Tensor<B, 3>`), except for the fused scan's untyped
//! primitives, whose ranks are checked at run time ([`try_fused_scan_forward`]).
//!
//! Empty inputs: every layer and model rejects a batch or a length of 0 with
//! [`SeqError::ZeroSize`], except [`try_lstm_forward`] on a length of 0 (a correct empty result:
//! `[B, 0, H]` and the state unchanged) and the generators on no prompts (no answers).
//!
//! Inputs come from local seeded generators; model initializations draw from Burn's generator
//! under the harness's `INIT_LOCK` (see [`init_seeded`]).

use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::{LstmConfig, LstmState};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor, TensorData, TensorPrimitive};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use seqlayers::SeqError;
use seqlayers::attention::{AttentionConfig, AttentionInput, KvCache, MultiHeadAttention};
use seqlayers::backend::Cpu;
use seqlayers::decode::{Decoder, GenerateConfig, generate_greedy, generate_greedy_padded};
use seqlayers::ensure_finite;
use seqlayers::internals::try_lstm_recurrence;
use seqlayers::internals::{FusedScanInput, try_fused_scan_forward};
use seqlayers::lstm::{LstmCarry, try_lstm_forward};
use seqlayers::model::{
    ClassifierConfig, EncoderDecoderConfig, LanguageModel, LanguageModelConfig,
    load_language_model, save_checkpoint,
};
use seqlayers::position::PositionEncoding;
use seqlayers::ssm::Discretization;
use seqlayers::ssm::{Mamba, MambaBlock, MambaConfig, MambaState};
use seqlayers::ssm::{ScanKind, SelectiveScanInput, selective_scan, try_scan};
use seqlayers::stack::{LayerState, SequenceStack, StackConfig, parse_layers};
use seqlayers::train::SequenceModel;

use crate::common::{dev, values};

const SCANS: [ScanKind; 4] = [
    ScanKind::Sequential,
    ScanKind::Parallel,
    ScanKind::LogSpace,
    ScanKind::Fused,
];

// ---------------------------------------------------------------- helpers

/// Draws with Burn's global generator seeded to `seed`, holding the lock every seeded
/// initialization of the suite and the drivers takes.
fn init_seeded<R>(seed: u64, f: impl FnOnce() -> R) -> R {
    let _guard = crate::harness::parallel::INIT_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    Cpu::seed(&dev(), seed);
    f()
}

/// A tensor of uniform values in `[-1, 1)` from a local generator seeded with `seed`.
fn uniform<const D: usize>(shape: [usize; D], seed: u64) -> Tensor<Cpu, D> {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_data(TensorData::new(v, shape), &dev())
}

/// `uniform` with `value` written at `index` (row-major, all axes).
fn with_value<const D: usize>(
    shape: [usize; D],
    seed: u64,
    index: [usize; D],
    value: f32,
) -> Tensor<Cpu, D> {
    let mut v = values(uniform(shape, seed));
    let mut flat = 0;
    for axis in 0..D {
        flat = flat * shape[axis] + index[axis];
    }
    v[flat] = value;
    Tensor::from_data(TensorData::new(v, shape), &dev())
}

fn ids(rows: &[Vec<i64>]) -> Tensor<Cpu, 2, Int> {
    let len = rows.first().map_or(0, Vec::len);
    let flat: Vec<i64> = rows.iter().flatten().copied().collect();
    Tensor::from_data(TensorData::new(flat, [rows.len(), len]), &dev())
}

fn no_ids(batch: usize, len: usize) -> Tensor<Cpu, 2, Int> {
    Tensor::from_data(
        TensorData::new(vec![0i64; batch * len], [batch, len]),
        &dev(),
    )
}

fn mask(batch: usize, len: usize) -> Tensor<Cpu, 2, Bool> {
    Tensor::from_data(
        TensorData::new(vec![false; batch * len], [batch, len]),
        &dev(),
    )
}

/// The error of `r` (which must fail).
fn err<T>(r: seqlayers::Result<T>, case: &str) -> SeqError {
    match r {
        Ok(_) => panic!("{case}: expected an error, got Ok"),
        Err(e) => e,
    }
}

/// What a case must return.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// `ShapeMismatch` whose `what` contains this.
    Shape(&'static str),
    /// `ZeroSize` of this name.
    Zero(&'static str),
    /// `TokenOutOfRange` with this id.
    Token(i64),
    /// `InvalidConfig` whose message contains this.
    Invalid(&'static str),
    /// `SequenceTooLong`.
    TooLong,
}

fn check(e: SeqError, want: Want, case: &str) {
    let ok = match (&e, want) {
        (SeqError::ShapeMismatch { what, .. }, Want::Shape(needle)) => what.contains(needle),
        (SeqError::ZeroSize { name }, Want::Zero(n)) => *name == n,
        (SeqError::TokenOutOfRange { id, .. }, Want::Token(want_id)) => *id == want_id,
        (SeqError::InvalidConfig(msg), Want::Invalid(needle)) => msg.contains(needle),
        (SeqError::SequenceTooLong { .. }, Want::TooLong) => true,
        _ => false,
    };
    assert!(ok, "{case}: expected {want:?}, got {e:?} ({e})");
}

fn expect<T>(r: seqlayers::Result<T>, want: Want, case: &str) {
    check(err(r, case), want, case);
}

/// True when every value of `t` is finite.
fn finite<const D: usize>(t: Tensor<Cpu, D>) -> bool {
    values(t).iter().all(|v| v.is_finite())
}

/// Batch row `b` of `t` `[B, L, X]` (all finite?).
fn row_finite(t: &Tensor<Cpu, 3>, b: usize) -> bool {
    let [_, l, x] = t.dims();
    finite(t.clone().slice([b..b + 1, 0..l, 0..x]))
}

// ---------------------------------------------------------------- scans

/// The inputs of a selective scan with `B = 2, L = 3, E = 4, N = 5`, each shape overridable.
#[allow(clippy::type_complexity)]
fn scan_input(
    x: [usize; 3],
    delta: [usize; 3],
    a: [usize; 2],
    b: [usize; 3],
    c: [usize; 3],
    d: Option<[usize; 1]>,
    h0: Option<[usize; 3]>,
) -> SelectiveScanInput<Cpu> {
    SelectiveScanInput {
        x: uniform(x, 1),
        delta: uniform(delta, 2).abs().add_scalar(0.01),
        a: uniform(a, 3).abs().add_scalar(0.1).neg(),
        b: uniform(b, 4),
        c: uniform(c, 5),
        d: d.map(|s| uniform(s, 6)),
        h0: h0.map(|s| uniform(s, 7)),
    }
}

#[test]
fn selective_scan_rejects_bad_shapes_and_empty_inputs() {
    let (x, bn, e) = ([2, 3, 4], [2, 3, 5], [4]);
    type Case = (&'static str, SelectiveScanInput<Cpu>, Want);
    let cases: Vec<Case> = vec![
        (
            "delta of another length",
            scan_input(x, [2, 4, 4], [4, 5], bn, bn, Some(e), None),
            Want::Shape("delta"),
        ),
        (
            "A with another E",
            scan_input(x, x, [3, 5], bn, bn, Some(e), None),
            Want::Shape("A [E, N]"),
        ),
        (
            "B with another N",
            scan_input(x, x, [4, 5], [2, 3, 6], bn, Some(e), None),
            Want::Shape("B [B, L, N]"),
        ),
        (
            "C with another batch",
            scan_input(x, x, [4, 5], bn, [1, 3, 5], Some(e), None),
            Want::Shape("C [B, L, N]"),
        ),
        (
            "D with another E",
            scan_input(x, x, [4, 5], bn, bn, Some([3]), None),
            Want::Shape("D [E]"),
        ),
        (
            "h0 of another batch",
            scan_input(x, x, [4, 5], bn, bn, Some(e), Some([3, 4, 5])),
            Want::Shape("h0"),
        ),
        (
            "batch 0",
            scan_input(
                [0, 3, 4],
                [0, 3, 4],
                [4, 5],
                [0, 3, 5],
                [0, 3, 5],
                None,
                None,
            ),
            Want::Zero("batch"),
        ),
        (
            "length 0",
            scan_input(
                [2, 0, 4],
                [2, 0, 4],
                [4, 5],
                [2, 0, 5],
                [2, 0, 5],
                None,
                None,
            ),
            Want::Zero("sequence length"),
        ),
        (
            "N = 0",
            scan_input(x, x, [4, 0], [2, 3, 0], [2, 3, 0], None, None),
            Want::Zero("state size (N)"),
        ),
    ];
    for (case, input, want) in cases {
        for kind in SCANS {
            let r = selective_scan(kind, Discretization::ZeroOrderHold, input.clone());
            check(err(r, case), want, &format!("{case} ({kind:?})"));
        }
    }
    // An invalid discretization is an OutOfRange error, before any shape.
    let good = scan_input(x, x, [4, 5], bn, bn, Some(e), None);
    let r = selective_scan(
        ScanKind::Fused,
        Discretization::Generalized { alpha: 2.0 },
        good.clone(),
    );
    assert!(matches!(
        err(r, "alpha 2"),
        SeqError::OutOfRange { name: "alpha", .. }
    ));
    // The same input is fine.
    for kind in SCANS {
        let (y, h) = selective_scan(kind, Discretization::ZeroOrderHold, good.clone()).unwrap();
        assert_eq!((y.dims(), h.dims()), ([2, 3, 4], [2, 4, 5]));
    }
}

#[test]
fn fused_scan_primitives_of_the_wrong_rank_are_errors() {
    let p3 = |s: [usize; 3], seed| uniform(s, seed).into_primitive().tensor();
    let good = || FusedScanInput::<Cpu> {
        x: p3([2, 3, 4], 1),
        delta: uniform([2, 3, 4], 2)
            .abs()
            .add_scalar(0.01)
            .into_primitive()
            .tensor(),
        a: uniform([4, 5], 3).abs().neg().into_primitive().tensor(),
        b: p3([2, 3, 5], 4),
        c: p3([2, 3, 5], 5),
        d: None,
        h0: None,
    };
    let disc = Discretization::ZeroOrderHold;
    type Case = (&'static str, FusedScanInput<Cpu>, Want);
    let cases: Vec<Case> = vec![
        (
            "x of rank 2",
            FusedScanInput {
                x: uniform([6, 4], 1).into_primitive().tensor(),
                ..good()
            },
            Want::Shape("rank of x"),
        ),
        (
            "A of rank 3",
            FusedScanInput {
                a: uniform([1, 4, 5], 3).into_primitive().tensor(),
                ..good()
            },
            Want::Shape("rank of A"),
        ),
        (
            "delta of rank 4",
            FusedScanInput {
                delta: uniform([2, 3, 4, 1], 2).into_primitive().tensor(),
                ..good()
            },
            Want::Shape("delta"),
        ),
        (
            "D of rank 2",
            FusedScanInput {
                d: Some(uniform([4, 1], 6).into_primitive().tensor()),
                ..good()
            },
            Want::Shape("D [E]"),
        ),
        (
            "h0 of rank 2",
            FusedScanInput {
                h0: Some(uniform([2, 20], 7).into_primitive().tensor()),
                ..good()
            },
            Want::Shape("h0"),
        ),
        (
            "batch 0",
            FusedScanInput {
                x: p3([0, 3, 4], 1),
                ..good()
            },
            Want::Zero("batch"),
        ),
    ];
    for (case, input, want) in cases {
        let r = try_fused_scan_forward(disc, input, false);
        check(err(r, case), want, case);
    }
    let out = try_fused_scan_forward(disc, good(), false).unwrap();
    let y = Tensor::<Cpu, 3>::from_primitive(TensorPrimitive::Float(out.y));
    assert_eq!(y.dims(), [2, 3, 4]);
}

#[test]
fn generic_scans_reject_bad_shapes() {
    let a = || uniform([2, 3, 4, 5], 1).abs();
    let b = || uniform([2, 3, 4, 5], 2);
    type Case = (
        &'static str,
        Tensor<Cpu, 4>,
        Tensor<Cpu, 4>,
        Option<Tensor<Cpu, 3>>,
        Want,
    );
    let cases: Vec<Case> = vec![
        (
            "b of another length",
            a(),
            uniform([2, 4, 4, 5], 2),
            None,
            Want::Shape("b [B, L, E, N]"),
        ),
        (
            "h0 of another N",
            a(),
            b(),
            Some(uniform([2, 4, 6], 3)),
            Want::Shape("h0"),
        ),
        (
            "length 0",
            uniform([2, 0, 4, 5], 1),
            uniform([2, 0, 4, 5], 2),
            None,
            Want::Zero("sequence length"),
        ),
        (
            "batch 0",
            uniform([0, 3, 4, 5], 1),
            uniform([0, 3, 4, 5], 2),
            None,
            Want::Zero("batch"),
        ),
    ];
    for (case, a, b, h0, want) in cases {
        for kind in [ScanKind::Sequential, ScanKind::Parallel, ScanKind::LogSpace] {
            let r = try_scan(kind, a.clone(), b.clone(), h0.clone());
            check(err(r, case), want, &format!("{case} ({kind:?})"));
        }
    }
    expect(
        try_scan(ScanKind::Fused, a(), b(), None),
        Want::Invalid("selective_scan"),
        "fused bare recurrence",
    );
    let h = try_scan(ScanKind::Parallel, a(), b(), None).unwrap();
    assert_eq!(h.dims(), [2, 3, 4, 5]);
}

// ---------------------------------------------------------------- Mamba

fn mamba() -> (Mamba<Cpu>, MambaBlock<Cpu>) {
    let config = MambaConfig::new(8).with_d_state(4);
    init_seeded(21, || {
        (
            config.try_init(&dev()).unwrap(),
            config.try_init_block(&dev()).unwrap(),
        )
    })
}

#[test]
fn mamba_mixer_and_block_reject_bad_shapes() {
    let (mixer, block) = mamba();
    let state = |batch: usize| mixer.init_state(batch, &dev());
    type Case = (&'static str, Tensor<Cpu, 3>, Want);
    let cases: Vec<Case> = vec![
        ("width 7", uniform([2, 3, 7], 1), Want::Shape("d_model")),
        ("batch 0", uniform([0, 3, 8], 1), Want::Zero("batch size")),
        (
            "length 0",
            uniform([2, 0, 8], 1),
            Want::Zero("sequence length"),
        ),
    ];
    for (case, x, want) in cases {
        expect(mixer.try_forward(x.clone()), want, &format!("mixer {case}"));
        // The block used to run its norm first and panic on a wrong width.
        expect(block.try_forward(x.clone()), want, &format!("block {case}"));
        expect(
            crate::common::from_zero(&block, x.clone()),
            want,
            &format!("block with state {case}"),
        );
        expect(
            mixer.selectivity(x),
            want,
            &format!("mixer selectivity {case}"),
        );
    }
    let x = uniform([2, 3, 8], 1);
    // Padding masks and states that do not fit the input.
    type StateCase = (
        &'static str,
        Option<MambaState<Cpu>>,
        Option<Tensor<Cpu, 2, Bool>>,
        Want,
    );
    let state_cases: Vec<StateCase> = vec![
        (
            "mask of another length",
            None,
            Some(mask(2, 4)),
            Want::Shape("padding mask [B, L]"),
        ),
        (
            "mask of another batch",
            None,
            Some(mask(1, 3)),
            Want::Shape("padding mask [B, L]"),
        ),
        (
            "state of another batch",
            Some(state(3)),
            None,
            Want::Shape("MambaState::conv"),
        ),
        (
            "state of another N",
            Some(MambaState::zeros(2, 16, 4, 5, &dev())),
            None,
            Want::Shape("MambaState::ssm"),
        ),
    ];
    for (case, s, m, want) in state_cases {
        let s = s.unwrap_or_else(|| state(2));
        let (from_mixer, from_block) = match m {
            Some(m) => (
                mixer.forward_padded(x.clone(), s.clone(), m.clone()),
                block.forward_padded(x.clone(), s, m),
            ),
            None => (
                mixer.forward_with_state(x.clone(), s.clone()),
                block.forward_with_state(x.clone(), s),
            ),
        };
        expect(from_mixer, want, &format!("mixer {case}"));
        expect(from_block, want, &format!("block {case}"));
    }
    // One step: `[B, D]` against the state.
    type StepCase = (&'static str, Tensor<Cpu, 2>, MambaState<Cpu>, Want);
    let step_cases: Vec<StepCase> = vec![
        (
            "step width 5",
            uniform([2, 5], 2),
            state(2),
            Want::Shape("d_model"),
        ),
        (
            "step batch 0",
            uniform([0, 8], 2),
            state(0),
            Want::Zero("batch size"),
        ),
        (
            "step state of another batch",
            uniform([2, 8], 2),
            state(1),
            Want::Shape("MambaState"),
        ),
    ];
    for (case, x_t, s, want) in step_cases {
        expect(
            mixer.step(x_t.clone(), s.clone()),
            want,
            &format!("mixer {case}"),
        );
        expect(block.step(x_t, s), want, &format!("block {case}"));
    }
}

// ---------------------------------------------------------------- attention

fn attention(causal: bool) -> MultiHeadAttention<Cpu> {
    init_seeded(22, || {
        AttentionConfig::new(8, 2)
            .with_causal(causal)
            .try_init(&dev())
            .unwrap()
    })
}

#[test]
fn attention_rejects_bad_shapes_and_masks() {
    let mha = attention(true);
    let x = || uniform([2, 3, 8], 1);
    type Case = (
        &'static str,
        Tensor<Cpu, 3>,
        Option<Tensor<Cpu, 2, Bool>>,
        Want,
    );
    let cases: Vec<Case> = vec![
        (
            "width 6",
            uniform([2, 3, 6], 1),
            None,
            Want::Shape("[B, L, D]"),
        ),
        (
            "batch 0",
            uniform([0, 3, 8], 1),
            None,
            Want::Zero("batch size"),
        ),
        (
            "length 0",
            uniform([2, 0, 8], 1),
            None,
            Want::Zero("sequence length"),
        ),
        (
            "key padding of another length",
            x(),
            Some(mask(2, 4)),
            Want::Shape("key padding mask"),
        ),
        (
            "key padding of another batch",
            x(),
            Some(mask(3, 3)),
            Want::Shape("key padding mask"),
        ),
    ];
    for (case, x, padding, want) in cases {
        expect(
            mha.try_attend(
                AttentionInput::self_attention(x.clone()).maybe_padding(padding.clone()),
            ),
            want,
            case,
        );
        expect(
            mha.attend_with_weights(
                AttentionInput::self_attention(x.clone()).maybe_padding(padding.clone()),
            ),
            want,
            &format!("weights, {case}"),
        );
        if padding.is_none() {
            expect(mha.try_forward(x), want, &format!("unmasked, {case}"));
        }
    }

    // Cross-attention: queries [B, Lq, D] over a context [B, Lk, D].
    let q = || uniform([2, 3, 8], 1);
    let ctx = || uniform([2, 5, 8], 2);
    type CrossCase = (
        &'static str,
        Tensor<Cpu, 3>,
        Tensor<Cpu, 3>,
        Option<Tensor<Cpu, 2, Bool>>,
        Want,
    );
    let cross: Vec<CrossCase> = vec![
        (
            "context of another batch",
            q(),
            uniform([3, 5, 8], 2),
            None,
            Want::Shape("batch size of the cross-attention context"),
        ),
        (
            "context width 4",
            q(),
            uniform([2, 5, 4], 2),
            None,
            Want::Shape("context"),
        ),
        (
            "queries width 4",
            uniform([2, 3, 4], 1),
            ctx(),
            None,
            Want::Shape("queries"),
        ),
        (
            "empty context",
            q(),
            uniform([2, 0, 8], 2),
            None,
            Want::Zero("sequence length"),
        ),
        (
            "context padding of the query length",
            q(),
            ctx(),
            Some(mask(2, 3)),
            Want::Shape("context padding mask"),
        ),
    ];
    for (case, q, c, padding, want) in cross {
        expect(
            mha.try_attend(
                AttentionInput::cross(q.clone(), c.clone()).maybe_padding(padding.clone()),
            ),
            want,
            case,
        );
        expect(
            mha.attend_with_weights(AttentionInput::cross(q, c).maybe_padding(padding)),
            want,
            &format!("weights, {case}"),
        );
    }
    expect(
        mha.cross_keys_values(ctx(), Some(mask(2, 4))),
        Want::Shape("context padding mask"),
        "cached context padding",
    );
    let kv = mha.cross_keys_values(ctx(), Some(mask(2, 5))).unwrap();
    expect(
        mha.try_attend(AttentionInput::cached(uniform([3, 1, 8], 3), kv.clone())),
        Want::Shape("cached cross-attention context"),
        "cached context of another batch",
    );
    expect(
        mha.try_attend(AttentionInput::cached(uniform([2, 1, 7], 3), kv.clone())),
        Want::Shape("queries"),
        "cached queries width 7",
    );

    // Incremental decoding.
    let mut cache = KvCache::new();
    expect(
        mha.forward_with_state(uniform([2, 1, 6], 4), cache.clone())
            .map(|(y, next)| {
                cache = next;
                y
            }),
        Want::Shape("forward_with_state input"),
        "step width 6",
    );
    expect(
        mha.forward_with_state(uniform([2, 0, 8], 4), cache.clone())
            .map(|(y, next)| {
                cache = next;
                y
            }),
        Want::Zero("sequence length"),
        "step of no token",
    );
    mha.forward_with_state(uniform([2, 1, 8], 4), cache.clone())
        .map(|(y, next)| {
            cache = next;
            y
        })
        .unwrap();
    expect(
        mha.forward_with_state(uniform([3, 1, 8], 4), cache.clone())
            .map(|(y, next)| {
                cache = next;
                y
            }),
        Want::Shape("KvCache"),
        "step of another batch",
    );
    // The state is passed by value: a failed step returns no state, and the caller's copy (a
    // clone here) is untouched.
    assert_eq!(cache.len(), 1, "failed steps leave the cache alone");
    expect(
        attention(false)
            .forward_with_state(uniform([2, 1, 8], 4), KvCache::new())
            .map(|(y, _)| y),
        Want::Invalid("causal"),
        "step of a bidirectional layer",
    );
}

// ---------------------------------------------------------------- LSTM

#[test]
fn lstm_rejects_bad_shapes_and_returns_empty_for_length_zero() {
    let lstm = init_seeded(23, || LstmConfig::new(8, 6, true).init::<Cpu>(&dev()));
    let state = |b: usize| LstmState::new(uniform([b, 6], 5), uniform([b, 6], 6));
    type Case = (
        &'static str,
        Tensor<Cpu, 3>,
        Option<LstmState<Cpu, 2>>,
        Want,
    );
    let cases: Vec<Case> = vec![
        (
            "width 5",
            uniform([2, 3, 5], 1),
            None,
            Want::Shape("d_input"),
        ),
        (
            "batch 0",
            uniform([0, 3, 8], 1),
            None,
            Want::Zero("batch size"),
        ),
        (
            "state of another batch",
            uniform([2, 3, 8], 1),
            Some(state(3)),
            Want::Shape("LSTM cell state"),
        ),
        (
            "hidden state of another width",
            uniform([2, 3, 8], 1),
            Some(LstmState::new(uniform([2, 6], 5), uniform([2, 7], 6))),
            Want::Shape("LSTM hidden state"),
        ),
    ];
    for (case, x, s, want) in cases {
        expect(try_lstm_forward(&lstm, x, s), want, case);
    }
    // Length 0: no step runs; the state comes back unchanged.
    let given = state(2); // `LstmState` is not `Clone`: the same seeds make it again
    let (h, s) = try_lstm_forward(&lstm, uniform([2, 0, 8], 1), Some(state(2))).unwrap();
    assert_eq!(h.dims(), [2, 0, 6]);
    assert_eq!(values(s.hidden), values(given.hidden));
    assert_eq!(values(s.cell), values(given.cell));
    let (h, s) = try_lstm_forward(&lstm, uniform([2, 0, 8], 1), None).unwrap();
    assert_eq!(h.dims(), [2, 0, 6]);
    assert!(values(s.hidden).iter().all(|&v| v == 0.0));

    // The bare recurrence: xw [B, L, 4H], W_h [H, 4H].
    type RecCase = (
        &'static str,
        Tensor<Cpu, 3>,
        Tensor<Cpu, 2>,
        Option<Tensor<Cpu, 2>>,
        Want,
    );
    let rec: Vec<RecCase> = vec![
        (
            "gates not a multiple of 4",
            uniform([2, 3, 10], 1),
            uniform([2, 10], 2),
            None,
            Want::Shape("multiple of 4"),
        ),
        (
            "W_h of another H",
            uniform([2, 3, 12], 1),
            uniform([4, 12], 2),
            None,
            Want::Shape("W_h"),
        ),
        (
            "h0 of another batch",
            uniform([2, 3, 12], 1),
            uniform([3, 12], 2),
            Some(uniform([1, 3], 3)),
            Want::Shape("h0"),
        ),
        (
            "length 0",
            uniform([2, 0, 12], 1),
            uniform([3, 12], 2),
            None,
            Want::Zero("sequence length"),
        ),
    ];
    for (case, xw, w_h, h0, want) in rec {
        expect(try_lstm_recurrence(xw, w_h, h0, None), want, case);
    }
}

// ---------------------------------------------------------------- stacks

fn stack() -> SequenceStack<Cpu> {
    let config = StackConfig::new(8, parse_layers("mamba,attention+mlp,lstm").unwrap())
        .with_n_heads(2)
        .with_mamba(MambaConfig::new(0).with_d_state(4));
    init_seeded(24, || config.try_init(&dev()).unwrap())
}

#[test]
fn stacks_reject_bad_shapes_and_states() {
    let stack = stack();
    assert_eq!(stack.d_model(), Some(8));
    type Case = (&'static str, Tensor<Cpu, 3>, Want);
    let cases: Vec<Case> = vec![
        ("width 5", uniform([2, 3, 5], 1), Want::Shape("d_model")),
        ("batch 0", uniform([0, 3, 8], 1), Want::Zero("batch size")),
        (
            "length 0",
            uniform([2, 0, 8], 1),
            Want::Zero("sequence length"),
        ),
    ];
    for (case, x, want) in cases {
        let [batch, _, _] = x.dims();
        expect(stack.try_forward(x.clone()), want, case);
        expect(
            stack.mamba_selectivity(x.clone()),
            want,
            &format!("selectivity, {case}"),
        );
        // Used to panic in the first block's norm on a wrong width.
        let state = stack.init_state(batch, &dev());
        let r = stack.forward_with_state(x, state);
        let e = err(r, case);
        let want = match want {
            Want::Zero("sequence length") => Want::Zero("chunk length"),
            w => w,
        };
        check(e, want, &format!("with state, {case}"));
    }
    expect(
        stack.step(uniform([2, 5], 1), stack.init_state(2, &dev())),
        Want::Shape("d_model"),
        "step width 5",
    );
    let x = || uniform([2, 3, 8], 1);
    expect(
        stack.forward_with_state(x(), stack.init_state(3, &dev())),
        Want::Shape("batch size of the decoding state"),
        "state of another batch",
    );
    let mut short = stack.init_state(2, &dev());
    short.layers.pop();
    expect(
        stack.forward_with_state(x(), short),
        Want::Shape("one per block"),
        "state of a shorter stack",
    );
    let mut swapped = stack.init_state(2, &dev());
    swapped.layers.swap(0, 2);
    expect(
        stack.forward_with_state(x(), swapped),
        Want::Invalid("init_state"),
        "states in the wrong order",
    );
    let mut bad_lstm = stack.init_state(2, &dev());
    bad_lstm.layers[2] = LayerState::Lstm(LstmCarry {
        cell: uniform([2, 5], 1),
        hidden: uniform([2, 5], 2),
    });
    expect(
        stack.forward_with_state(x(), bad_lstm),
        Want::Shape("LSTM cell state"),
        "LSTM state of another width",
    );
    let mut bad_mamba = stack.init_state(2, &dev());
    bad_mamba.layers[0] = LayerState::Mamba(MambaState::zeros(2, 16, 4, 3, &dev()));
    expect(
        stack.forward_with_state(x(), bad_mamba),
        Want::Shape("MambaState::ssm"),
        "Mamba state of another N",
    );
}

// ---------------------------------------------------------------- models

const VOCAB: usize = 11;

fn lm_config(layers: &str, position: PositionEncoding) -> LanguageModelConfig {
    let stack = StackConfig::new(8, parse_layers(layers).unwrap())
        .with_n_heads(2)
        .with_position(position)
        .with_mamba(MambaConfig::new(0).with_d_state(4));
    LanguageModelConfig::new(stack, VOCAB)
}

fn lm(layers: &str, position: PositionEncoding, seed: u64) -> LanguageModel<Cpu> {
    let config = lm_config(layers, position);
    init_seeded(seed, || config.try_init(&dev()).unwrap())
}

/// The id-tensor cases every model entry point must reject.
fn bad_ids(vocab: i64) -> Vec<(&'static str, Tensor<Cpu, 2, Int>, Want)> {
    vec![
        (
            "id = vocab size",
            ids(&[vec![1, 2, 3], vec![4, vocab, 5]]),
            Want::Token(vocab),
        ),
        (
            "id far past the vocabulary",
            ids(&[vec![1, 2, 1_000_000]]),
            Want::Token(1_000_000),
        ),
        (
            "negative id",
            ids(&[vec![1, -1, 3], vec![4, vocab, 5]]),
            Want::Token(-1),
        ),
        ("batch 0", no_ids(0, 3), Want::Zero("batch size")),
        ("length 0", no_ids(2, 0), Want::Zero("sequence length")),
    ]
}

#[test]
fn language_models_reject_bad_ids_and_lengths() {
    for layers in ["mamba", "attention+mlp", "lstm"] {
        let model = lm(layers, PositionEncoding::None, 25);
        for (case, tokens, want) in bad_ids(VOCAB as i64) {
            let case = format!("{layers}: {case}");
            expect(model.forward(tokens.clone()), want, &case);
            expect(model.last_logits(tokens.clone()), want, &case);
            expect(
                model.mamba_selectivity(tokens.clone()),
                want,
                &format!("selectivity, {case}"),
            );
            let batch = tokens.dims()[0];
            let state = model.init_state(batch, &dev());
            expect(
                model.forward_with_state(tokens, state),
                want,
                &format!("decoding, {case}"),
            );
        }
    }
    let learned = lm("attention", PositionEncoding::learned(4), 26);
    expect(
        learned.forward(ids(&[vec![1; 5]])),
        Want::TooLong,
        "past the learned table",
    );
    let e = err(learned.forward(ids(&[vec![1, 11]])), "message");
    assert_eq!(
        e.to_string(),
        "token id 11 is outside the vocabulary 0..11; check the tokenizer or vocab_size"
    );
}

#[test]
fn generation_rejects_bad_prompts() {
    let model = lm("mamba", PositionEncoding::None, 27);
    let config = GenerateConfig::new(3);
    expect(
        generate_greedy(&model, &[vec![1, 2], vec![3, 11]], config, &dev()),
        Want::Token(11),
        "prompt id past the vocabulary",
    );
    expect(
        generate_greedy(&model, &[vec![1, 2], vec![]], config, &dev()),
        Want::Invalid("prompt 1 is empty"),
        "empty prompt",
    );
    // Used to panic (`chunks(0)`) on no tokens at all.
    expect(
        generate_greedy_padded(&model, &[], 2, 0, config, &dev()),
        Want::Zero("padded prompt length"),
        "no padded tokens",
    );
    expect(
        generate_greedy_padded(&model, &[1, 2, 3], 0, 0, config, &dev()),
        Want::Zero("batch size"),
        "padded batch 0",
    );
    expect(
        generate_greedy_padded(&model, &[1, 2, 3], 2, 0, config, &dev()),
        Want::Shape("padded prompt batch"),
        "ragged padded batch",
    );
    expect(
        generate_greedy_padded(&model, &[0, 0, 1, 2], 2, 0, config, &dev()),
        Want::Invalid("prompt 0 is empty"),
        "a row of padding only",
    );
    // No prompts: no answers (a correct empty result).
    assert!(
        generate_greedy(&model, &[], config, &dev())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn classifier_returns_typed_errors_instead_of_panicking() {
    // The recall classifier's embedding lookup used to panic on an id outside its table.
    let k = 6;
    for layers in ["mamba", "attention", "lstm"] {
        let stack = StackConfig::new(8, parse_layers(layers).unwrap())
            .with_n_heads(2)
            .with_mamba(MambaConfig::new(0).with_d_state(4));
        let config = ClassifierConfig::new(stack, k);
        let model = init_seeded(28, || {
            config.try_init::<Cpu>(uniform([k, 8], 9), &dev()).unwrap()
        });
        for (case, tokens, want) in bad_ids(k as i64) {
            let case = format!("{layers}: {case}");
            expect(model.try_hidden(tokens.clone()), want, &case);
            expect(model.logits(tokens.clone()), want, &case);
            // `last_logits` used to underflow `len - 1` on an empty sequence.
            expect(model.last_logits(tokens), want, &case);
        }
        let good = model.last_logits(ids(&[vec![0, 5, 3]])).unwrap();
        assert_eq!(good.dims(), [1, k]);
    }
}

#[test]
fn encoder_decoder_rejects_bad_ids_masks_and_memories() {
    let config = EncoderDecoderConfig::new(VOCAB, 8)
        .with_n_heads(2)
        .with_encoder_layers(1)
        .with_decoder_layers(1);
    let model = init_seeded(29, || config.try_init::<Cpu>(&dev()).unwrap());
    let source = || ids(&[vec![1, 2, 3, 4], vec![5, 6, 7, 8]]);
    let target = || ids(&[vec![1, 2], vec![3, 4]]);
    for (case, tokens, want) in bad_ids(VOCAB as i64) {
        expect(
            model.encode(tokens.clone(), None),
            want,
            &format!("source {case}"),
        );
        expect(
            model.forward(source(), None, tokens.clone()),
            want,
            &format!("target {case}"),
        );
        let batch = tokens.dims()[0].max(1);
        let state = model.start(ids(&vec![vec![1, 2]; batch]), None).unwrap();
        expect(model.step(tokens, state), want, &format!("step {case}"));
    }
    let e = err(model.encode(ids(&[vec![1, 11]]), None), "source message");
    assert!(e.to_string().starts_with("source id 11"), "{e}");

    // Masks and memories that do not fit.
    type Case = (&'static str, seqlayers::Result<Tensor<Cpu, 3>>, Want);
    let memory = || model.encode(source(), None).unwrap(); // [2, 4, 8]
    let cases: Vec<Case> = vec![
        (
            "source padding of another length",
            model.encode(source(), Some(mask(2, 3))),
            Want::Shape("key padding mask"),
        ),
        (
            "source padding of another batch",
            model.forward(source(), Some(mask(1, 4)), target()),
            Want::Shape("key padding mask"),
        ),
        (
            "memory of another width",
            model.decode(target(), uniform([2, 4, 6], 3), None),
            Want::Shape("context"),
        ),
        (
            "memory of another batch",
            model.decode(target(), uniform([3, 4, 8], 3), None),
            Want::Shape("batch size of the cross-attention context"),
        ),
        (
            "memory padding of another length",
            model.decode(target(), memory(), Some(mask(2, 5))),
            Want::Shape("context padding mask"),
        ),
        (
            "targets of another batch",
            model.forward(source(), None, ids(&[vec![1, 2]])),
            Want::Shape("batch size"),
        ),
    ];
    for (case, r, want) in cases {
        expect(r, want, case);
    }
    expect(
        model.cross_attention_maps(source(), ids(&[vec![1, 2]])),
        Want::Shape("batch size"),
        "maps with targets of another batch",
    );
    expect(
        model.start(source(), Some(mask(2, 5))),
        Want::Shape("key padding mask"),
        "start with a padding of another length",
    );
    let state = model.start(source(), None).unwrap();
    expect(
        model.step(ids(&[vec![1]]), state),
        Want::Shape("encoded source"),
        "step of another batch",
    );
}

// ---------------------------------------------------------------- non-finite values

#[test]
fn ensure_finite_reports_the_first_non_finite_value() {
    type Case = (&'static str, f32, &'static str);
    let cases: [Case; 3] = [
        ("NaN", f32::NAN, "NaN"),
        ("+inf", f32::INFINITY, "inf"),
        ("-inf", f32::NEG_INFINITY, "-inf"),
    ];
    for (case, bad, rendered) in cases {
        let x = with_value([2, 3, 4], 1, [1, 2, 0], bad);
        match ensure_finite(&x, "test input") {
            Err(SeqError::NonFinite { what, value, index }) => {
                assert_eq!(what, "test input", "{case}");
                assert_eq!(value, rendered, "{case}");
                assert_eq!(index, vec![1, 2, 0], "{case}");
            }
            other => panic!("{case}: expected NonFinite, got {other:?}"),
        }
    }
    ensure_finite(&uniform([2, 3, 4], 1), "finite").unwrap();
}

/// Non-finite inputs propagate (documented on each forward): the batch row that holds the bad
/// value gets non-finite outputs, the other rows stay finite, and nothing panics.
#[test]
fn non_finite_inputs_propagate_within_their_batch_row() {
    let (mixer, block) = mamba();
    let mha = attention(true);
    let stack = stack();
    let lstm = init_seeded(30, || LstmConfig::new(8, 8, true).init::<Cpu>(&dev()));
    type Layer<'a> = (
        &'static str,
        Box<dyn Fn(Tensor<Cpu, 3>) -> Tensor<Cpu, 3> + 'a>,
    );
    let layers: Vec<Layer<'_>> = vec![
        ("mamba mixer", Box::new(|x| mixer.try_forward(x).unwrap())),
        ("mamba block", Box::new(|x| block.try_forward(x).unwrap())),
        ("attention", Box::new(|x| mha.try_forward(x).unwrap())),
        (
            "attention, padded",
            Box::new(|x| {
                let mut pad = vec![false; 2 * 4];
                pad[1] = true; // the bad value sits at a padded key
                let pad = Tensor::from_data(TensorData::new(pad, [2, 4]), &dev());
                mha.try_attend(AttentionInput::self_attention(x).padding(pad))
                    .unwrap()
            }),
        ),
        ("stack", Box::new(|x| stack.try_forward(x).unwrap())),
        (
            "lstm",
            Box::new(|x| try_lstm_forward(&lstm, x, None).unwrap().0),
        ),
    ];
    for (name, run) in &layers {
        let clean = run(uniform([2, 4, 8], 1));
        assert!(finite(clean), "{name}: finite inputs give finite outputs");
        let out = run(with_value([2, 4, 8], 1, [0, 1, 3], f32::NAN));
        assert!(!row_finite(&out, 0), "{name}: NaN reaches its row");
        assert!(row_finite(&out, 1), "{name}: other rows are untouched");
    }
    // The selective scan itself, every algorithm.
    for kind in SCANS {
        let mut input = scan_input(
            [2, 3, 4],
            [2, 3, 4],
            [4, 5],
            [2, 3, 5],
            [2, 3, 5],
            Some([4]),
            None,
        );
        input.x = with_value([2, 3, 4], 1, [1, 0, 2], f32::NAN);
        let (y, h) = selective_scan(kind, Discretization::ZeroOrderHold, input).unwrap();
        assert!(!row_finite(&y, 1), "{kind:?}");
        // The log-space scan splits B̄x by sign and a NaN is neither positive nor negative, so
        // its states skip it (documented on `selective_scan`); `D ⊙ x` still carries it to `y`.
        assert_eq!(row_finite(&h, 1), kind == ScanKind::LogSpace, "{kind:?}");
        assert!(row_finite(&y, 0) && row_finite(&h, 0), "{kind:?}");
    }
}

// ---------------------------------------------------------------- checkpoints

/// A fresh, empty temporary folder for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "seqlayers-bad-inputs-{name}-{}",
        std::process::id()
    ));
    std::fs::remove_dir_all(&dir).ok();
    dir
}

/// Every float parameter of a module: `(path, values)` in visiting order.
fn parameters<B: Backend, M: Module<B>>(module: &M) -> Vec<(String, Vec<f32>)> {
    #[derive(Default)]
    struct Collect {
        path: Vec<String>,
        found: Vec<(String, Vec<f32>)>,
    }
    impl<B: Backend> ModuleVisitor<B> for Collect {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let v = param.val().into_data().convert::<f32>().to_vec().unwrap();
            self.found.push((self.path.join("."), v));
        }
    }
    let mut c = Collect::default();
    module.visit(&mut c);
    c.found
}

fn is_checkpoint_error(e: SeqError, needle: &str, case: &str) {
    let text = e.to_string();
    assert!(
        matches!(e, SeqError::Checkpoint { .. }),
        "{case}: expected a Checkpoint error, got {e:?}"
    );
    assert!(
        text.contains(needle),
        "{case}: `{text}` should mention `{needle}`"
    );
}

/// Mamba and LSTM language models come back from a checkpoint with the same parameter values
/// (every tensor, by name) and the same logits, not just the same parameter count.
#[test]
fn mamba_and_lstm_checkpoints_round_trip_values() {
    for (i, layers) in ["mamba,mamba", "lstm,lstm", "mamba,attention+mlp,lstm"]
        .into_iter()
        .enumerate()
    {
        let config = lm_config(layers, PositionEncoding::None);
        let model: LanguageModel<Cpu> =
            init_seeded(40 + i as u64, || config.try_init(&dev()).unwrap());
        let tokens = ids(&[vec![1, 2, 3, 4, 5], vec![6, 7, 8, 9, 10]]);
        let logits = values(model.forward(tokens.clone()).unwrap());
        let params = parameters(&model);
        let dir = temp_dir(&format!("round-trip-{i}"));
        save_checkpoint(model, &config, &dir).unwrap();
        let (loaded, loaded_config) = load_language_model::<Cpu>(&dir, &dev()).unwrap();
        assert_eq!(loaded_config.stack.layers, config.stack.layers, "{layers}");
        assert_eq!(parameters(&loaded), params, "{layers}: parameter values");
        assert_eq!(
            values(loaded.forward(tokens).unwrap()),
            logits,
            "{layers}: logits"
        );
        // A fresh model of the same configuration differs (the comparison has teeth).
        let other: LanguageModel<Cpu> = init_seeded(99, || config.try_init(&dev()).unwrap());
        assert_ne!(parameters(&other), params, "{layers}");
        std::fs::remove_dir_all(&dir).ok();
    }
}

/// Saves a small Mamba language model into `dir`; returns its configuration.
fn saved_mamba(dir: &Path) -> LanguageModelConfig {
    let config = lm_config("mamba,mamba", PositionEncoding::None);
    let model: LanguageModel<Cpu> = init_seeded(45, || config.try_init(&dev()).unwrap());
    save_checkpoint(model, &config, dir).unwrap();
    config
}

#[test]
fn checkpoints_with_flipped_bytes_are_typed_errors() {
    let dir = temp_dir("flipped");
    saved_mamba(&dir);
    let weights = dir.join("model.mpk");
    let bytes = std::fs::read(&weights).unwrap();
    let n = bytes.len();
    // The header, a field name, the middle of the weights, the last byte.
    for at in [0, 1, 7, n / 3, n / 2, n - 9, n - 1] {
        let mut flipped = bytes.clone();
        flipped[at] ^= 0x5a;
        std::fs::write(&weights, &flipped).unwrap();
        let e = err(
            load_language_model::<Cpu>(&dir, &dev()),
            &format!("flip at {at}"),
        );
        is_checkpoint_error(e, "model.sum", &format!("byte {at} of {n}"));
    }
    // A byte appended, a byte dropped.
    for (case, changed) in [
        ("appended", [bytes.as_slice(), &[0]].concat()),
        ("dropped", bytes[..n - 1].to_vec()),
    ] {
        std::fs::write(&weights, changed).unwrap();
        is_checkpoint_error(
            load_language_model::<Cpu>(&dir, &dev()).unwrap_err(),
            "corrupted",
            case,
        );
    }
    // Without `model.sum` (checkpoints saved before it existed) nothing panics either: a flip
    // in the record's structure is a decoding error, one inside a weight decodes to other
    // weights (which is what the checksum is for).
    std::fs::remove_file(dir.join("model.sum")).unwrap();
    let mut undetected = 0;
    for at in (0..n).step_by(n / 97 + 1) {
        let mut flipped = bytes.clone();
        flipped[at] ^= 0x5a;
        std::fs::write(&weights, &flipped).unwrap();
        match load_language_model::<Cpu>(&dir, &dev()) {
            Ok(_) => undetected += 1,
            Err(SeqError::Checkpoint { .. }) => {}
            Err(other) => panic!("flip at {at}, no model.sum: {other:?}"),
        }
    }
    assert!(undetected > 0, "some flips only change a weight");
    // The original loads again.
    std::fs::write(&weights, &bytes).unwrap();
    load_language_model::<Cpu>(&dir, &dev()).unwrap();
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn checkpoints_with_a_config_of_the_wrong_schema_are_typed_errors() {
    let dir = temp_dir("schema");
    let config = saved_mamba(&dir);
    let config_path = dir.join("config.json");
    let mamba_json = serde_json_of(&MambaConfig::new(8));
    let right = std::fs::read_to_string(&config_path).unwrap();
    let cases: Vec<(&str, String, &str)> = vec![
        ("an array", "[1, 2, 3]".into(), "not a valid configuration"),
        ("a number", "42".into(), "not a valid configuration"),
        (
            "an object of other fields",
            r#"{"d_model": 8, "layers": "mamba"}"#.into(),
            "not a valid configuration",
        ),
        (
            "another config type",
            mamba_json,
            "not a valid configuration",
        ),
        (
            "a string where a number belongs",
            right.replace(
                &format!("\"vocab_size\": {VOCAB}"),
                "\"vocab_size\": \"eleven\"",
            ),
            "not a valid configuration",
        ),
        (
            "a valid schema with an invalid value",
            right.replace(&format!("\"vocab_size\": {VOCAB}"), "\"vocab_size\": 0"),
            "does not build a model",
        ),
    ];
    for (case, json, needle) in cases {
        assert_ne!(json, right, "{case}: the edit took effect");
        std::fs::write(&config_path, json).unwrap();
        is_checkpoint_error(
            load_language_model::<Cpu>(&dir, &dev()).unwrap_err(),
            needle,
            case,
        );
    }
    burn::config::Config::save(&config, &config_path).unwrap();
    load_language_model::<Cpu>(&dir, &dev()).unwrap();
    std::fs::remove_dir_all(&dir).ok();
}

/// `config` as the JSON Burn writes.
fn serde_json_of<C: burn::config::Config>(config: &C) -> String {
    let path = temp_dir("json-of").with_extension("json");
    config.save(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).ok();
    text
}

#[test]
fn checkpoints_of_another_configuration_are_typed_errors() {
    let dir = temp_dir("other-config");
    let config = saved_mamba(&dir);
    type Case = (&'static str, LanguageModelConfig, &'static str);
    let mut wider_state = config.clone();
    wider_state.stack.mamba = wider_state.stack.mamba.clone().with_d_state(8);
    let mut wider = config.clone();
    wider.stack.d_model = 16;
    let cases: Vec<Case> = vec![
        ("another state size", wider_state, "x_proj.weight [16, 17]"),
        ("another width", wider, "[11, 16]"),
        // Burn's `load_record` panics on another enum variant: this used to abort the load.
        (
            "LSTM blocks where Mamba was saved",
            lm_config("lstm,lstm", PositionEncoding::None),
            "Lstm",
        ),
        (
            "one more block",
            lm_config("mamba,mamba,mamba", PositionEncoding::None),
            "asks for `stack.blocks.2",
        ),
        (
            "a tied head where an untied one was saved",
            config.clone().with_tie_embeddings(true),
            "tensors",
        ),
    ];
    let sum = std::fs::read(dir.join("model.sum")).unwrap();
    for (case, other, needle) in &cases {
        burn::config::Config::save(other, dir.join("config.json")).unwrap();
        // With `model.sum`: the tensor list is compared before the record is decoded.
        let e = load_language_model::<Cpu>(&dir, &dev()).unwrap_err();
        is_checkpoint_error(e.clone(), "another configuration", case);
        is_checkpoint_error(e, needle, case);
    }
    // Without it (checkpoints saved before it existed): still a typed error, after decoding,
    // except for a saved head the configuration does not use, which is ignored.
    std::fs::remove_file(dir.join("model.sum")).unwrap();
    for (case, other, _) in &cases[..4] {
        burn::config::Config::save(other, dir.join("config.json")).unwrap();
        is_checkpoint_error(
            load_language_model::<Cpu>(&dir, &dev()).unwrap_err(),
            "model.mpk",
            &format!("{case}, no model.sum"),
        );
    }
    std::fs::write(dir.join("model.sum"), sum).unwrap();
    burn::config::Config::save(&config, dir.join("config.json")).unwrap();
    load_language_model::<Cpu>(&dir, &dev()).unwrap();
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn checkpoints_to_unwritable_folders_are_write_errors() {
    let base = temp_dir("unwritable");
    std::fs::create_dir_all(&base).unwrap();
    let file = base.join("a-file");
    std::fs::write(&file, "not a folder").unwrap();
    let config = lm_config("lstm", PositionEncoding::None);
    let model: LanguageModel<Cpu> = init_seeded(46, || config.try_init(&dev()).unwrap());
    for (case, dir) in [
        ("a folder below a regular file", file.join("ckpt")),
        ("a regular file as the folder", file.clone()),
    ] {
        match save_checkpoint(model.clone(), &config, &dir) {
            Err(SeqError::Write { path, .. }) => {
                assert!(path.contains("a-file"), "{case}: {path}")
            }
            other => panic!("{case}: expected a Write error, got {other:?}"),
        }
    }
    std::fs::remove_dir_all(&base).ok();
}
