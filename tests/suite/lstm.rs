//! The fused LSTM against Burn's `Lstm` (an independent implementation): values, every
//! gradient, the fallback for other configurations, and thread-count independence.

use burn::backend::Autodiff;
use burn::nn::{Lstm, LstmConfig, LstmState};
use burn::tensor::{Tensor, TensorData, backend::Backend};
use seqlayers::backend::{Cpu, CpuAutodiff};
use seqlayers::internals::{lstm_recurrence, recurrence_tensor_ops};
use seqlayers::lstm::lstm_forward;

use crate::common::{fresh_leaves, max_abs_diff, seeded};

type Ad = CpuAutodiff;

fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

/// Standard-normal values from a local RNG seeded with `seed`: the same tensor on every call,
/// whatever other tests running on other threads do to the backend's global RNG.
fn random<B: Backend, const D: usize>(shape: [usize; D], seed: u64) -> Tensor<B, D> {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    let mut rng = StdRng::seed_from_u64(seed);
    let n = shape.iter().product::<usize>();
    let v: Vec<f32> = (0..n)
        .map(|_| rng.sample::<f32, _>(rand_distr::StandardNormal))
        .collect();
    Tensor::from_data(TensorData::new(v, shape), &Default::default())
}

/// Every float parameter of an LSTM as `(name, tensor)`.
fn params<B: Backend>(lstm: &Lstm<B>) -> Vec<(String, Tensor<B, 2>, Option<Tensor<B, 1>>)> {
    let gates = [
        ("input", &lstm.input_gate),
        ("forget", &lstm.forget_gate),
        ("cell", &lstm.cell_gate),
        ("output", &lstm.output_gate),
    ];
    let mut out = Vec::new();
    for (name, g) in gates {
        for (part, lin) in [("x", &g.input_transform), ("h", &g.hidden_transform)] {
            out.push((
                format!("{name}.{part}"),
                lin.weight.val(),
                lin.bias.as_ref().map(|b| b.val()),
            ));
        }
    }
    out
}

/// A loss touching every output: weighted sums of `h`, the last `h` and the last `c`.
fn loss(h: Tensor<Ad, 3>, state: LstmState<Ad, 2>) -> Tensor<Ad, 1> {
    let [b, l, hd] = h.dims();
    let w_h = random::<Ad, 3>([b, l, hd], 11);
    let w_last = random::<Ad, 2>([b, hd], 12);
    let w_c = random::<Ad, 2>([b, hd], 13);
    (h * w_h).sum() + (state.hidden * w_last).sum() + (state.cell * w_c).sum()
}

/// `config`'s LSTM with every (lazily initialized) weight drawn now, from the global generator
/// seeded with `seed` under the suite's init lock.
fn init<B: Backend>(config: LstmConfig, seed: u64) -> Lstm<B> {
    seeded(seed, || {
        let lstm = config.init::<B>(&Default::default());
        let _ = params(&lstm); // draws the lazily initialized weights in place
        lstm
    })
}

/// Outputs and gradients (x, h0, c0, then each weight and bias) of one implementation.
fn run(
    lstm: &Lstm<Ad>,
    x: Tensor<Ad, 3>,
    state: Option<(Tensor<Ad, 2>, Tensor<Ad, 2>)>,
    fused: bool,
) -> Vec<(String, Vec<f32>)> {
    let _ = params(lstm); // draws the lazily initialized weights in place
    let lstm = &fresh_leaves(lstm);
    let x = x.require_grad();
    let state = state.map(|(c, h)| (c.require_grad(), h.require_grad()));
    let s = state
        .clone()
        .map(|(c, h)| LstmState::new(c.clone(), h.clone()));
    let (h, last) = if fused {
        lstm_forward(lstm, x.clone(), s)
    } else {
        lstm.forward(x.clone(), s)
    };
    let mut out = vec![
        ("h".to_string(), values(h.clone())),
        ("c_last".to_string(), values(last.cell.clone())),
        ("h_last".to_string(), values(last.hidden.clone())),
    ];
    let grads = loss(h, last).backward();
    out.push(("dx".into(), values(x.grad(&grads).unwrap())));
    if let Some((c0, h0)) = state {
        out.push(("dh0".into(), values(h0.grad(&grads).unwrap())));
        out.push(("dc0".into(), values(c0.grad(&grads).unwrap())));
    }
    for (name, w, b) in params(lstm) {
        out.push((format!("d{name}.weight"), values(w.grad(&grads).unwrap())));
        if let Some(b) = b {
            out.push((format!("d{name}.bias"), values(b.grad(&grads).unwrap())));
        }
    }
    out
}

fn assert_same(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)], tol: f32) {
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(b) {
        let scale = y.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        let d = max_abs_diff(x, y);
        assert!(d <= tol * scale, "{name}: max |Δ| = {d:e} (scale {scale})");
    }
}

#[test]
fn fused_lstm_equals_burn_lstm_in_value_and_every_gradient() {
    for (with_state, bias, (b, l, d, hd)) in [
        (false, true, (3, 7, 5, 6)),
        (true, true, (2, 9, 4, 8)),
        (true, false, (1, 1, 3, 2)),
    ] {
        let lstm = init::<Ad>(LstmConfig::new(d, hd, bias), 5);
        let x = random::<Ad, 3>([b, l, d], 1);
        let state = with_state.then(|| {
            (
                random::<Ad, 2>([b, hd], 2) * 0.5,
                random::<Ad, 2>([b, hd], 3) * 0.5,
            )
        });
        let fused = run(&lstm, x.clone(), state.clone(), true);
        let reference = run(&lstm, x, state, false);
        assert_same(&fused, &reference, 2e-5);
    }
}

#[test]
fn recurrence_kernel_equals_its_tensor_op_form_on_the_inner_backend() {
    let (b, l, hd) = (4, 6, 5);
    let xw = random::<Cpu, 3>([b, l, 4 * hd], 21);
    let w_h = random::<Cpu, 2>([hd, 4 * hd], 22) * 0.3;
    let h0 = random::<Cpu, 2>([b, hd], 23);
    let c0 = random::<Cpu, 2>([b, hd], 24);
    let (h1, c1) = lstm_recurrence(xw.clone(), w_h.clone(), Some(h0.clone()), Some(c0.clone()));
    let (h2, c2) = recurrence_tensor_ops(xw, w_h, Some(h0), Some(c0));
    assert!(max_abs_diff(&values(h1), &values(h2)) < 1e-5);
    assert!(max_abs_diff(&values(c1), &values(c2)) < 1e-5);
}

#[test]
fn other_lstm_configurations_fall_back_to_burn() {
    let lstm = init::<Cpu>(LstmConfig::new(3, 4, true).with_reverse(true), 7);
    let x = random::<Cpu, 3>([2, 5, 3], 31);
    let (h1, s1) = lstm_forward(&lstm, x.clone(), None);
    let (h2, s2) = lstm.forward(x, None);
    assert_eq!(values(h1), values(h2));
    assert_eq!(values(s1.cell), values(s2.cell));
}

#[test]
fn fused_lstm_gradients_do_not_depend_on_the_thread_count() {
    // Large enough that the kernel splits rows across threads.
    let (b, l, d, hd) = (8, 32, 16, 32);
    let lstm = init::<Autodiff<Cpu>>(LstmConfig::new(d, hd, true), 9);
    let x = random::<Ad, 3>([b, l, d], 41);
    let go = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| run(&lstm, x.clone(), None, true))
    };
    let one = go(1);
    let two = go(2);
    for ((name, a), (_, b)) in one.iter().zip(&two) {
        assert!(a == b, "{name} differs between 1 and 2 threads");
    }
}

#[test]
fn fused_lstm_equals_burn_lstm_at_every_simd_level() {
    use seqlayers::simd::{SimdLevel, with_max_level};
    // Widths that exercise the 64-column register blocks and their remainder (4H = 4·20 = 80).
    let lstm = init::<Ad>(LstmConfig::new(7, 20, true), 6);
    let x = random::<Ad, 3>([3, 11, 7], 51);
    let state = Some((
        random::<Ad, 2>([3, 20], 52) * 0.5,
        random::<Ad, 2>([3, 20], 53) * 0.5,
    ));
    let reference = run(&lstm, x.clone(), state.clone(), false);
    for level in SimdLevel::available() {
        let fused = with_max_level(level, || run(&lstm, x.clone(), state.clone(), true));
        assert_same(&fused, &reference, 2e-5);
    }
}
