//! Attention probes of seed 004 §1 (CSE 517 A2 §1.2–1.4): hand-built queries that make
//! dot-product attention select, average, and react to edited keys.
//!
//! Computed with the crate's attention primitive
//! [`seqlayers::attention::scaled_dot_product_attention`] on the CPU backend, *without* the
//! `1/√d` scale (scale = 1), exactly as in the exercise: `O = softmax(q·Kᵀ)·V`.
//!
//! Run: `cargo run --release --example attention_probe`

use burn::tensor::{Tensor, TensorData};
use clap::Parser;
use seqlayers::attention::{ScoreMask, scaled_dot_product_attention};
use seqlayers::backend::{Cpu, CpuDevice};

/// Keys `k_0..k_3` of the exercise (`d = 3`, `n = 4`).
const K: [[f64; 3]; 4] = [
    [0.47, 0.65, 0.60],
    [0.64, 0.50, -0.59],
    [-0.03, -0.48, -0.88],
    [0.43, -0.83, 0.35],
];
/// Values `v_0..v_3` of the exercise.
const V: [[f64; 3]; 4] = [
    [-0.07, -0.88, 0.47],
    [0.37, -0.93, -0.07],
    [-0.25, -0.75, 0.61],
    [0.94, 0.20, 0.28],
];
/// The "large number" S that sharpens the softmax.
const S: f64 = 20.0;
/// Largest acceptable error (the exercise's full-credit threshold).
const TOLERANCE: f64 = 0.05;

type Vec3 = [f64; 3];

fn dot(a: Vec3, b: Vec3) -> f64 {
    a.iter().zip(&b).map(|(x, y)| x * y).sum()
}
fn add(a: Vec3, b: Vec3) -> Vec3 {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}
fn sub(a: Vec3, b: Vec3) -> Vec3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}
fn scale(s: f64, a: Vec3) -> Vec3 {
    [s * a[0], s * a[1], s * a[2]]
}
fn norm(a: Vec3) -> f64 {
    dot(a, a).sqrt()
}

/// `softmax(q·Kᵀ)·V` through the crate's primitive (one batch, one head, one query).
fn attend(q: Vec3, keys: &[Vec3; 4], device: &CpuDevice) -> (Vec3, [f64; 4]) {
    let to_tensor = |data: Vec<f32>, rows: usize| {
        Tensor::<Cpu, 4>::from_data(TensorData::new(data, [1, 1, rows, 3]), device)
    };
    let flat = |m: &[Vec3]| m.iter().flatten().map(|&v| v as f32).collect::<Vec<_>>();
    let q = to_tensor(q.iter().map(|&v| v as f32).collect(), 1); // [1, 1, 1, 3]
    let k = to_tensor(flat(keys), 4); // [1, 1, 4, 3]
    let v = to_tensor(flat(&V), 4); // [1, 1, 4, 3]
    let out = scaled_dot_product_attention(q, k, v, 1.0, &ScoreMask::none());
    let o: Vec<f32> = out.context.into_data().to_vec().expect("f32 output");
    let w: Vec<f32> = out.weights.into_data().to_vec().expect("f32 weights");
    (
        [o[0] as f64, o[1] as f64, o[2] as f64],
        [w[0] as f64, w[1] as f64, w[2] as f64, w[3] as f64],
    )
}

/// No flags: the probes are the exercise's; `--help` says what the example does.
#[derive(Parser, Debug)]
#[command(
    about = "Hand-built queries that make dot-product attention select, average and react to edited keys"
)]
struct Args {}

struct Probe {
    name: &'static str,
    query: Vec3,
    keys: [Vec3; 4],
    target: Vec3,
    why: String,
}

fn main() {
    Args::parse();
    let device = CpuDevice::default();
    let mean = |rows: &[Vec3]| {
        scale(
            1.0 / rows.len() as f64,
            rows.iter().fold([0.0; 3], |a, r| add(a, *r)),
        )
    };

    // §1.3.2 query: q ⟂ (k0 − k1), so q·k0 = q·k1 exactly, while pointing along k0 + k1
    // (Gram–Schmidt) keeps both scores well above those of k2 and k3.
    let w = add(K[0], K[1]);
    let delta = sub(K[0], K[1]);
    let u = sub(w, scale(dot(w, delta) / dot(delta, delta), delta));
    let q_pair = scale(S, u);
    // §1.4.2 key: the unit vector along q maximises q·k over unit keys (Cauchy–Schwarz):
    // q·k2' = ‖q‖ > q·k0 = q·k1.
    let k2_unit = scale(1.0 / norm(q_pair), q_pair);

    let mut edited_avg = K;
    edited_avg[2] = K[0];
    let mut edited_sel = K;
    edited_sel[2] = k2_unit;

    let scores = |q: Vec3, keys: &[Vec3; 4]| keys.map(|k| dot(q, k));
    let fmt = |s: [f64; 4]| format!("[{:.2}, {:.2}, {:.2}, {:.2}]", s[0], s[1], s[2], s[3]);

    let probes = vec![
        Probe {
            name: "1.2.1 select v0",
            query: scale(S, K[0]),
            keys: K,
            target: V[0],
            why: format!(
                "q = S·k0: k0 is the key most aligned with itself, scores q·K = {}; the gap of \
                 S·(|k0|² − k0·k1) = {:.1} makes the softmax one-hot on v0",
                fmt(scores(scale(S, K[0]), &K)),
                S * (dot(K[0], K[0]) - dot(K[0], K[1]))
            ),
        },
        Probe {
            name: "1.3.1 average all",
            query: [0.0; 3],
            keys: K,
            target: mean(&V),
            why: "q = 0: every score is 0, softmax of equal scores is uniform (1/4 each), so the \
                  output is exactly the mean of the values"
                .into(),
        },
        Probe {
            name: "1.3.2 average v0,v1",
            query: q_pair,
            keys: K,
            target: mean(&V[..2]),
            why: format!(
                "q = S·u, u = (k0+k1) made orthogonal to (k0−k1): q·k0 = q·k1 exactly, scores {}; \
                 two equal top scores split the weight 1/2–1/2",
                fmt(scores(q_pair, &K))
            ),
        },
        Probe {
            name: "1.4.1 k2 := k0, avg v0..v2",
            query: q_pair,
            keys: edited_avg,
            target: mean(&V[..3]),
            why: format!(
                "k2' = k0 gives q·k2' = q·k0 = q·k1, scores {}: three tied top scores share the \
                 weight 1/3 each",
                fmt(scores(q_pair, &edited_avg))
            ),
        },
        Probe {
            name: "1.4.2 k2 := q/|q|, select v2",
            query: q_pair,
            keys: edited_sel,
            target: V[2],
            why: format!(
                "k2' = q/‖q‖ (unit length) maximises q·k2' = ‖q‖ = {:.2} > q·k0 = {:.2}; the gap \
                 {:.1} makes the softmax one-hot on v2. The softmax denominator couples all \
                 tokens, so editing one key changes which values every query mixes",
                norm(q_pair),
                dot(q_pair, K[0]),
                norm(q_pair) - dot(q_pair, K[0])
            ),
        },
    ];

    println!("Attention probes (seed 004 §1): O = softmax(q·Kᵀ)·V, no scaling, S = {S}\n");
    println!(
        "{:<30} {:>26} {:>26} {:>32} {:>10}",
        "probe", "output", "target", "weights", "L2 error"
    );
    let v3 = |v: Vec3| format!("[{:.3}, {:.3}, {:.3}]", v[0], v[1], v[2]);
    let mut worst: f64 = 0.0;
    let mut reasons = Vec::new();
    for p in &probes {
        let (out, weights) = attend(p.query, &p.keys, &device);
        let error = norm(sub(out, p.target));
        worst = worst.max(error);
        println!(
            "{:<30} {:>26} {:>26} {:>32} {:>10.2e}",
            p.name,
            v3(out),
            v3(p.target),
            format!(
                "[{:.3}, {:.3}, {:.3}, {:.3}]",
                weights[0], weights[1], weights[2], weights[3]
            ),
            error
        );
        reasons.push(format!("- {}: {}.", p.name, p.why));
    }
    println!("\nWhy it works:");
    for r in reasons {
        println!("{r}");
    }
    println!(
        "\nWorst error {worst:.2e} {} the tolerance {TOLERANCE}.",
        if worst <= TOLERANCE {
            "is within"
        } else {
            "EXCEEDS"
        }
    );
    if worst > TOLERANCE {
        std::process::exit(1);
    }
}
