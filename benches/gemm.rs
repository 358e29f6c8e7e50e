//! sgemm throughput of `matrixmultiply` (what burn-ndarray calls) against the `gemm` crate (what
//! burn-flex and, since round 3's third pass, `src/linear.rs` call), at the shapes of one d = 384
//! GPT training step (batch 32 × 64 tokens = 2048 rows): the forward products of the Q/K/V/output
//! projections and of the MLP, and the two backward products of each (`∂x = ∂y·Wᵀ` with `W` read
//! transposed through its strides, `∂W = xᵀ·∂y` with `x` read transposed). The speed issue asks
//! for this comparison before a GEMM is chosen.
//!
//! ```text
//! cargo bench --bench gemm                 # every core
//! RAYON_NUM_THREADS=1 MATMUL_NUM_THREADS=1 cargo bench --bench gemm
//! ```
//!
//! Prints one row per shape: GFLOP/s of each crate and their ratio. Threads: `matrixmultiply`
//! splits over `MATMUL_NUM_THREADS` (default: the physical cores), `gemm` over Rayon's pool
//! (`RAYON_NUM_THREADS`); set both to compare like with like.

use std::time::Instant;

/// `(label, m, k, n, a transposed, b transposed)`: `C [m, n] = A [m, k] · B [k, n]`.
const SHAPES: [(&str, usize, usize, usize, bool, bool); 9] = [
    ("qkv/out forward  x·W", 2048, 384, 384, false, false),
    ("qkv/out ∂x = ∂y·Wᵀ", 2048, 384, 384, false, true),
    ("qkv/out ∂W = xᵀ·∂y", 384, 2048, 384, true, false),
    ("mlp up forward", 2048, 384, 1536, false, false),
    ("mlp up ∂x", 2048, 1536, 384, false, true),
    ("mlp up ∂W", 384, 2048, 1536, true, false),
    ("mlp down forward", 2048, 1536, 384, false, false),
    ("mlp down ∂x", 2048, 384, 1536, false, true),
    ("mlp down ∂W", 1536, 2048, 384, true, false),
];

/// Row and column strides of a dense `[rows, cols]` operand, stored row-major or as the
/// transpose of a row-major `[cols, rows]` matrix.
fn strides(rows: usize, cols: usize, transposed: bool) -> (isize, isize) {
    let _ = rows;
    if transposed {
        (1, rows as isize)
    } else {
        (cols as isize, 1)
    }
}

fn seconds(mut f: impl FnMut(), reps: usize) -> f64 {
    f(); // warm-up: packing buffers, thread pools
    let start = Instant::now();
    for _ in 0..reps {
        f();
    }
    start.elapsed().as_secs_f64() / reps as f64
}

fn main() {
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    println!("# sgemm, {threads} threads for gemm (Rayon); matrixmultiply: MATMUL_NUM_THREADS");
    println!(
        "| product | m × k × n | matrixmultiply GFLOP/s | gemm GFLOP/s | gemm / matrixmultiply |"
    );
    println!("|---|---|---|---|---|");
    let (mut total_mm, mut total_gemm, mut flops) = (0.0, 0.0, 0.0);
    for (label, m, k, n, a_t, b_t) in SHAPES {
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i % 97) as f32 - 48.0) / 97.0)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i % 89) as f32 - 44.0) / 89.0)
            .collect();
        let (rsa, csa) = strides(m, k, a_t);
        let (rsb, csb) = strides(k, n, b_t);
        let mut c_mm = vec![0.0f32; m * n];
        let mut c_gemm = vec![0.0f32; m * n];
        let reps = (2e10 / (2.0 * (m * k * n) as f64)).clamp(3.0, 50.0) as usize;
        // SAFETY (both): the strides describe dense matrices inside `a` ([m, k]) and `b`
        // ([k, n]), and `c` is a dense row-major [m, n] buffer.
        let t_mm = seconds(
            || unsafe {
                matrixmultiply::sgemm(
                    m,
                    k,
                    n,
                    1.0,
                    a.as_ptr(),
                    rsa,
                    csa,
                    b.as_ptr(),
                    rsb,
                    csb,
                    0.0,
                    c_mm.as_mut_ptr(),
                    n as isize,
                    1,
                )
            },
            reps,
        );
        let t_gemm = seconds(
            || unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    c_gemm.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    a.as_ptr(),
                    csa,
                    rsa,
                    b.as_ptr(),
                    csb,
                    rsb,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    if threads > 1 {
                        gemm::Parallelism::Rayon(threads)
                    } else {
                        gemm::Parallelism::None
                    },
                )
            },
            reps,
        );
        let worst = c_mm
            .iter()
            .zip(&c_gemm)
            .map(|(x, y)| (x - y).abs() / x.abs().max(1.0))
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-3, "{label}: the two products differ by {worst}");
        let f = 2.0 * (m * k * n) as f64;
        let (g_mm, g_gemm) = (f / t_mm / 1e9, f / t_gemm / 1e9);
        println!(
            "| {label} | {m} × {k} × {n} | {g_mm:.1} | {g_gemm:.1} | {:.2} |",
            g_gemm / g_mm
        );
        total_mm += t_mm;
        total_gemm += t_gemm;
        flops += f;
    }
    println!(
        "| all nine (one GPT layer's products) | | {:.1} | {:.1} | {:.2} |",
        flops / total_mm / 1e9,
        flops / total_gemm / 1e9,
        total_mm / total_gemm
    );
}
