//! Token-wise affine maps `x · W + b` as one matrix product over all tokens.
//!
//! Every projection of the crate (Q/K/V, Mamba's `in_proj`/`x_proj`/`dt_proj`/`out_proj`,
//! MLPs, heads, the LSTM's input projection) is token-wise: `x [.., D_in]` → `[.., D_out]`.
//!
//! - **CPU backend** (`NdArray<f32>` and its autodiff): one GEMM on the flattened
//!   `[rows, D_in]` slice forward, and in backward `∂x = ∂y · Wᵀ`, `∂W = xᵀ · ∂y` as two more
//!   GEMMs on the same buffers (transposes are strides, not copies) and `∂b` as a
//!   fixed-order column sum. The GEMM is the `gemm` crate's (burn-flex's), on Rayon's pool
//!   with the crate's other kernels; matrixmultiply (burn-ndarray's) keeps a thread pool of its
//!   own, and on two cores the two pools woke, spun and yielded against each other. Its split
//!   over threads is over output blocks only, so results do not depend on the thread count. burn-ndarray 0.21's `matmul` copies its operands and its result on
//!   every call (its `reshape` goes through an owned array), and its weight gradient for a
//!   `[B, L, D_in]` input is a batch of `B` products summed afterwards; on a d = 64 Mamba step
//!   those copies were ~20% of the time.
//! - **Other backends**: the leading axes are flattened and Burn's `linear` runs once on
//!   `[rows, D_in]` — the same function.
//!
//! # Glossary
//! - `rows` = product of the leading axes; `x [rows, D_in]`, `W [D_in, D_out]`, `b [D_out]`,
//!   `y`, `∂y` `[rows, D_out]`.

use burn::backend::autodiff::{
    checkpoint::base::Checkpointer,
    grads::Gradients,
    ops::{Backward, Ops},
};
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::module::linear;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorPrimitive};
use burn_ndarray::NdArrayTensor;

use crate::backend::prim;
use crate::backend::{Cpu, CpuAutodiff};
use crate::dispatch::{FusedOp, KernelPath, Routed, kernel_path, route, same};
use crate::ndarray_io::{column_sums, register_parent_grads, tensor, track_node, values, zeroed};

/// `layer(x)` for `x [.., D_in]` → `[.., D_out]`, as one product over all leading axes.
pub(crate) fn apply<B: Backend, const D: usize>(
    layer: &Linear<B>,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    affine(x, layer.weight.val(), layer.bias.as_ref().map(|b| b.val()))
}

/// Output columns `[start, start + width)` of `layer(x)`: `x [.., D_in]` → `[.., width]`.
///
/// The crate's convention for splitting a fused projection (Q/K/V, Mamba's `x`/`z` and
/// `Δ`/`B`/`C`): cut the small weight `[D_in, D_out]` and run one product per part, rather than
/// cut the `[.., D_out]` output. On burn-ndarray an output `narrow` copies strided columns
/// element by element and its backward zero-fills a whole `[.., D_out]` gradient per part;
/// the weight's are small. Same forward numbers as one product followed by a split.
pub(crate) fn apply_columns<B: Backend, const D: usize>(
    layer: &Linear<B>,
    x: Tensor<B, D>,
    start: usize,
    width: usize,
) -> Tensor<B, D> {
    let (weight, bias) = (layer.weight.val(), layer.bias.as_ref().map(|b| b.val()));
    if matches!(
        kernel_path::<B>(FusedOp::Linear),
        KernelPath::CpuKernel | KernelPath::CpuKernelNode
    ) {
        // The kernel reads the columns where they lie in `W` and `b`, and its backward writes
        // their gradients into whole-size ones; a `narrow` copied the columns forward and, in
        // backward, zero-filled and assigned a whole-size gradient per part on the calling
        // thread, then Burn summed the parts there.
        return affine_window(x, weight, bias, Window { start, width });
    }
    let mut weight = weight.narrow(1, start, width); // [D_in, width]
    if width == 1 {
        // Burn 0.21's CubeCL backends (wgpu, CUDA) take the first-column slice `[D_in, 1]`
        // (row stride > 1, no offset) for a contiguous tensor in `reshape` and `matmul`, and
        // read the wrong elements (Mamba's Δ projection at `dt_rank = 1` was off by 17%;
        // tests/gpu/upstream.rs pins it). An element-wise op writes a contiguous copy: the
        // parameter still holds the buffer, so the op cannot run in place on the slice.
        weight = weight.mul_scalar(1.0); // [D_in, 1]
    }
    let bias = bias.map(|b| b.narrow(0, start, width)); // [width]
    affine(x, weight, bias)
}

/// `x · w` for `x [.., D_in]` and `w [D_in, D_out]` → `[.., D_out]`.
pub(crate) fn matmul_tokens<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    w: Tensor<B, 2>,
) -> Tensor<B, D> {
    affine(x, w, None)
}

/// `x · w + b` for `x [.., D_in]`, `w [D_in, D_out]`, `b [D_out]` → `[.., D_out]`.
pub(crate) fn affine<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
) -> Tensor<B, D> {
    let width = weight.dims()[1];
    affine_window(x, weight, bias, Window { start: 0, width })
}

/// `x · w[:, window] + b[window]` → `[.., window.width]`: the columns are read in place on the
/// CPU kernel paths; every other backend gets the whole-width `weight` (`window` covers it).
fn affine_window<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
    window: Window,
) -> Tensor<B, D> {
    let x = match route::<B, _, Tensor<Cpu, D>, Tensor<CpuAutodiff, D>>(FusedOp::Linear, x) {
        Routed::CpuAutodiff(x) => {
            return same(autodiff_affine(x, same(weight), bias.map(same), window));
        }
        Routed::Cpu(x) => {
            let b = bias.map(|b: Tensor<B, 1>| prim::<Cpu, 1>(same(b)));
            let w = prim::<Cpu, 2>(same(weight));
            let y = forward(&prim(x), &w, b.as_ref(), window);
            return same(Tensor::<Cpu, D>::from_primitive(TensorPrimitive::Float(y)));
        }
        #[cfg(any(feature = "wgpu", feature = "cuda"))]
        Routed::Gpu(x) => x,
        Routed::Other(x) => x,
    };
    debug_assert_eq!((window.start, window.width), (0, weight.dims()[1]));
    if D <= 2 {
        return linear(x, weight, bias);
    }
    let dims = x.dims();
    let rows = dims[..D - 1].iter().product::<usize>();
    let y = linear(x.reshape([rows, dims[D - 1]]), weight, bias); // [rows, D_out]
    let mut out = dims;
    out[D - 1] = y.dims()[1];
    y.reshape(out) // [.., D_out]
}

/// Which columns of `W` `[D_in, W_cols]` and `b` `[W_cols]` a product uses:
/// `start..start + width` (all of them for a plain projection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    start: usize,
    width: usize,
}

/// Sizes of one affine map.
#[derive(Debug, Clone, Copy)]
struct Dims {
    rows: usize,
    d_in: usize,
    /// The output width: the window's.
    d_out: usize,
    /// The columns of the whole `W` (its row stride).
    w_cols: usize,
}

impl Dims {
    fn of(x: &NdArrayTensor, w: &NdArrayTensor, window: Window) -> Self {
        use burn::tensor::TensorMetadata;
        let (xs, ws) = (x.shape(), w.shape());
        let d_in = xs[xs.num_dims() - 1];
        assert_eq!(ws[0], d_in, "affine: x [.., {d_in}] against W {:?}", ws);
        assert!(
            window.start + window.width <= ws[1],
            "affine: columns {window:?} of W {ws:?}"
        );
        Dims {
            rows: xs.num_elements() / d_in.max(1),
            d_in,
            d_out: window.width,
            w_cols: ws[1],
        }
    }
}

/// `c [m, n] (+)= a [m, k] · b [k, n]`, `a` and `b` given with (row stride, column stride)
/// — `(k, 1)`/`(n, 1)` row-major, `(1, m)`/`(1, k)` a transpose, or any strides that stay inside
/// them (a column window of a wider matrix) — and the rows of `c` `c_row_stride` apart (`n`:
/// row-major; more: a column window of a wider row-major matrix).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(
    (m, k, n): (usize, usize, usize),
    a: &[f32],
    a_strides: (usize, usize),
    b: &[f32],
    b_strides: (usize, usize),
    accumulate: bool,
    c: &mut [f32],
    c_row_stride: usize,
) {
    assert!(
        c_row_stride >= n && (m == 0 || n == 0 || c.len() >= (m - 1) * c_row_stride + n),
        "gemm: output smaller than its shape"
    );
    // SAFETY: `c` holds every element `[i, j]` at `i · c_row_stride + j` (checked above), all
    // initialized.
    unsafe {
        sgemm_raw(
            (m, k, n),
            a,
            a_strides,
            b,
            b_strides,
            accumulate,
            c.as_mut_ptr(),
            c_row_stride,
        )
    }
}

/// `a [m, k] · b [k, n]` into a new row-major `[m, n]` buffer (strides as in [`gemm`]). The
/// buffer is not zero-filled first: with `β = 0` the GEMM writes every element without reading
/// any (a zero fill was a separate pass over each gradient, 1.5–5% of a GPT step).
pub(crate) fn gemm_new(
    (m, k, n): (usize, usize, usize),
    a: &[f32],
    a_strides: (usize, usize),
    b: &[f32],
    b_strides: (usize, usize),
) -> Vec<f32> {
    let len = m * n;
    let mut c: Vec<f32> = Vec::with_capacity(len);
    // SAFETY: the buffer has room for `m · n` values; `sgemm` with β = 0 writes all of them
    // (also when `k = 0`: it then stores zeros) and reads none, so every element is initialized
    // before `set_len`.
    unsafe {
        sgemm_raw(
            (m, k, n),
            a,
            a_strides,
            b,
            b_strides,
            false,
            c.as_mut_ptr(),
            n,
        );
        c.set_len(len);
    }
    c
}

/// Whether a `[rows, cols]` operand with strides `(rs, cs)` stays inside `len` elements.
fn fits(len: usize, rows: usize, cols: usize, (rs, cs): (usize, usize)) -> bool {
    rows == 0 || cols == 0 || (rows - 1) * rs + (cols - 1) * cs < len
}

/// The `gemm` crate's f32 product on checked operands, split over Rayon's current pool.
///
/// # Safety
/// `c` must point to `m` rows of `n` writable `f32`, `c_row_stride` apart; they need not be
/// initialized when `accumulate` is false.
#[allow(clippy::too_many_arguments)]
unsafe fn sgemm_raw(
    (m, k, n): (usize, usize, usize),
    a: &[f32],
    (rsa, csa): (usize, usize),
    b: &[f32],
    (rsb, csb): (usize, usize),
    accumulate: bool,
    c: *mut f32,
    c_row_stride: usize,
) {
    assert!(
        fits(a.len(), m, k, (rsa, csa)) && fits(b.len(), k, n, (rsb, csb)),
        "gemm: strides reach past the operands"
    );
    if m == 0 || n == 0 {
        return;
    }
    // Rayon's pool, not a second one: on two cores a GEMM pool of its own (matrixmultiply's)
    // and the Rayon workers of the other kernels woke, spun and yielded against each other.
    let parallelism = if rayon::current_num_threads() > 1 {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the assert above bounds every index the strides reach in `a` and `b`, and the
    // caller guarantees `c` [m, n] with row stride `c_row_stride`. With `read_dst = false` the
    // product writes every element of `c` and reads none (`k = 0` included: it then stores
    // zeros).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c,
            1,
            c_row_stride as isize,
            accumulate,
            a.as_ptr(),
            csa as isize,
            rsa as isize,
            b.as_ptr(),
            csb as isize,
            rsb as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `rows` copies of `b` (`[rows, len b]`), written in parallel chunks when large: a serial fill
/// on the calling thread kept the other cores waiting.
fn repeat_rows(b: &[f32], rows: usize) -> Vec<f32> {
    use rayon::prelude::*;
    /// Rows per parallel task: about 64 KiB of output at d = 256.
    const ROWS_PER_TASK: usize = 64;
    let len = b.len() * rows;
    let mut y = Vec::with_capacity(len);
    if b.is_empty() {
        return y;
    }
    let fill = |chunk: &mut [std::mem::MaybeUninit<f32>]| {
        for row in chunk.chunks_exact_mut(b.len()) {
            for (y, &b) in row.iter_mut().zip(b) {
                y.write(b);
            }
        }
    };
    let spare = &mut y.spare_capacity_mut()[..len];
    if rows > ROWS_PER_TASK && rayon::current_num_threads() > 1 {
        spare.par_chunks_mut(ROWS_PER_TASK * b.len()).for_each(fill);
    } else {
        fill(spare);
    }
    // SAFETY: `fill` wrote all `len` elements (every chunk is whole rows of `b.len()`).
    unsafe { y.set_len(len) };
    y
}

/// `y = x · W[:, window] + b[window]` on ndarray tensors.
fn forward(
    x: &NdArrayTensor,
    w: &NdArrayTensor,
    b: Option<&NdArrayTensor>,
    window: Window,
) -> NdArrayTensor {
    use burn::tensor::TensorMetadata;
    let Dims {
        rows,
        d_in,
        d_out,
        w_cols,
    } = Dims::of(x, w, window);
    let (xv, wv) = (values(x), values(w));
    let w_window = &wv[window.start..]; // W[:, window]: rows `w_cols` apart
    let y = match b {
        Some(b) => {
            let bv = values(b);
            let mut y = repeat_rows(&bv[window.start..window.start + d_out], rows); // every row starts at b
            gemm(
                (rows, d_in, d_out),
                &xv,
                (d_in, 1),
                w_window,
                (w_cols, 1),
                true,
                &mut y,
                d_out,
            );
            y
        }
        None => gemm_new((rows, d_in, d_out), &xv, (d_in, 1), w_window, (w_cols, 1)),
    };
    let mut shape = x.shape();
    let last = shape.num_dims() - 1;
    shape[last] = d_out;
    tensor(y, shape)
}

/// What the backward needs: `x` for `∂W`, `W` for `∂x`, and the columns used.
#[derive(Debug, Clone)]
struct State {
    x: NdArrayTensor,
    w: NdArrayTensor,
    window: Window,
}

/// `(∂x, ∂W, ∂b)` for the requested ones, from `∂y`; `∂W` and `∂b` have the whole `W`'s and
/// `b`'s shapes, zero outside the window.
fn backward(state: &State, dy: &NdArrayTensor, want: [bool; 3]) -> [Option<NdArrayTensor>; 3] {
    use burn::tensor::TensorMetadata;
    let window = state.window;
    let Dims {
        rows,
        d_in,
        d_out,
        w_cols,
    } = Dims::of(&state.x, &state.w, window);
    let whole = d_out == w_cols;
    let dyv = values(dy);
    let dx = want[0].then(|| {
        let wv = values(&state.w);
        // ∂x [rows, D_in] = ∂y [rows, D_out] · W[:, window]ᵀ (Wᵀ[j, i] = W[i, start + j]:
        // strides (1, W_cols)).
        let dx = gemm_new(
            (rows, d_out, d_in),
            &dyv,
            (d_out, 1),
            &wv[window.start..],
            (1, w_cols),
        );
        tensor(dx, state.x.shape())
    });
    let dw = want[1].then(|| {
        let xv = values(&state.x);
        // ∂W[:, window] [D_in, D_out] = xᵀ [D_in, rows] · ∂y (xᵀ[i, r] = x[r, i]: strides
        // (1, D_in)).
        let (product, x_t, dy_s) = ((d_in, rows, d_out), (1, d_in), (d_out, 1));
        let dw = if whole {
            gemm_new(product, &xv, x_t, &dyv, dy_s)
        } else {
            let mut dw = zeroed(d_in * w_cols);
            gemm(
                product,
                &xv,
                x_t,
                &dyv,
                dy_s,
                false,
                &mut dw[window.start..],
                w_cols,
            );
            dw
        };
        tensor(dw, [d_in, w_cols])
    });
    let db = want[2].then(|| {
        // ∂b[window] = Σ_rows ∂y, each column summed over the rows in order.
        let sums = column_sums(rows, d_out, |row, columns, acc| {
            let g = &dyv[row * d_out..][columns];
            for (acc, &g) in acc.iter_mut().zip(g) {
                *acc += g;
            }
        });
        let db = if whole {
            sums
        } else {
            let mut db = vec![0.0f32; w_cols];
            db[window.start..window.start + d_out].copy_from_slice(&sums);
            db
        };
        tensor(db, [w_cols])
    });
    [dx, dw, db]
}

/// The backward node with bias (`N = 3`: x, W, b) or without (`N = 2`).
#[derive(Debug)]
struct AffineBackward;

impl Backward<Cpu, 3> for AffineBackward {
    type State = State;

    fn backward(self, ops: Ops<State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        register_parent_grads(ops, grads, backward);
    }
}

impl Backward<Cpu, 2> for AffineBackward {
    type State = State;

    fn backward(self, ops: Ops<State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        register_parent_grads(ops, grads, backward);
    }
}

/// Records `y` as the output of an [`AffineBackward`] step over `parents` (x, W and maybe b)
/// that read the columns `window` of W and b.
fn track<const N: usize>(
    parents: [&FloatTensor<CpuAutodiff>; N],
    y: NdArrayTensor,
    window: Window,
) -> FloatTensor<CpuAutodiff>
where
    AffineBackward: Backward<Cpu, N, State = State>,
{
    track_node(AffineBackward, parents, y, || State {
        x: parents[0].primitive.clone(),
        w: parents[1].primitive.clone(),
        window,
    })
}

fn autodiff_affine<const D: usize>(
    x: Tensor<CpuAutodiff, D>,
    w: Tensor<CpuAutodiff, 2>,
    b: Option<Tensor<CpuAutodiff, 1>>,
    window: Window,
) -> Tensor<CpuAutodiff, D> {
    let (x, w, b) = (prim(x), prim(w), b.map(prim));
    let y = forward(
        &x.primitive,
        &w.primitive,
        b.as_ref().map(|b| &b.primitive),
        window,
    );
    let out = match &b {
        Some(b) => track([&x, &w, b], y, window),
        None => track([&x, &w], y, window),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    type AD = CpuAutodiff;

    fn vec_of<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
        t.into_data().convert::<f32>().to_vec().unwrap()
    }

    fn assert_close(what: &str, a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-5 * y.abs().max(1.0),
                "{what}[{i}]: {x} vs {y}"
            );
        }
    }

    /// `y` and the gradients of x, W and b.
    type Outputs = (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>);

    fn assert_outputs_close(case: &str, ours: &Outputs, burn: &Outputs) {
        assert_close(&format!("y ({case})"), &ours.0, &burn.0);
        assert_close(&format!("∂x ({case})"), &ours.1, &burn.1);
        assert_close(&format!("∂W ({case})"), &ours.2, &burn.2);
        assert_close(&format!("∂b ({case})"), &ours.3, &burn.3);
    }

    /// Deterministic values on ±√3 (variance 1) from a local generator: the backend's global
    /// one is shared with every other test thread.
    fn data(seed: u64, n: usize) -> Vec<f32> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-1.732f32..1.732)).collect()
    }

    fn tensor<B: Backend, const D: usize>(seed: u64, shape: [usize; D]) -> Tensor<B, D> {
        let n = shape.iter().product();
        Tensor::from_data(TensorData::new(data(seed, n), shape), &Default::default())
    }

    /// `affine` or Burn's `linear` at rank 3 on the autodiff backend.
    type Affine = fn(Tensor<AD, 3>, Tensor<AD, 2>, Option<Tensor<AD, 1>>) -> Tensor<AD, 3>;

    /// The kernel against Burn's own `linear` (a batched matmul) in value and in the gradients
    /// of x, W and b, for ranks 2–4, with and without bias, on a transposed (non-contiguous)
    /// input too. Each backward pass gets its own leaves: two passes through the same leaves
    /// can lose a gradient when another test's backward runs at the same moment (Burn 0.21,
    /// tracel-ai/burn#5573).
    #[test]
    fn cpu_affine_matches_burn_linear_in_value_and_gradients() {
        for (with_bias, transposed) in [(true, false), (false, false), (true, true)] {
            let probe = tensor::<AD, 3>(4, [3, 5, 4]);
            let run = |f: Affine| {
                let x = if transposed {
                    tensor::<AD, 3>(5, [3, 7, 5]).swap_dims(1, 2)
                } else {
                    tensor::<AD, 3>(1, [3, 5, 7])
                }
                .require_grad();
                let w = tensor::<AD, 2>(2, [7, 4]).require_grad();
                let b = tensor::<AD, 1>(3, [4]).require_grad();
                let y = f(x.clone(), w.clone(), with_bias.then(|| b.clone()));
                let g = (y.clone() * probe.clone()).sum().backward();
                let gb = if with_bias {
                    vec_of(b.grad(&g).unwrap())
                } else {
                    vec![]
                };
                (
                    vec_of(y),
                    vec_of(x.grad(&g).unwrap()),
                    vec_of(w.grad(&g).unwrap()),
                    gb,
                )
            };
            let ours = run(affine);
            let burn = run(linear);
            let case = format!("bias {with_bias}, transposed {transposed}");
            assert_outputs_close(&case, &ours, &burn);
        }
        // Ranks 2 and 4, and the plain (inference) backend.
        let x2 = tensor::<Cpu, 2>(6, [6, 3]);
        let x4 = tensor::<Cpu, 4>(7, [2, 2, 3, 3]);
        let w = tensor::<Cpu, 2>(8, [3, 5]);
        let b = tensor::<Cpu, 1>(9, [5]);
        assert_close(
            "rank 2",
            &vec_of(affine(x2.clone(), w.clone(), Some(b.clone()))),
            &vec_of(linear(x2, w.clone(), Some(b.clone()))),
        );
        let y4 = affine(x4.clone(), w.clone(), Some(b.clone()));
        assert_eq!(y4.dims(), [2, 2, 3, 5]);
        assert_close("rank 4", &vec_of(y4), &vec_of(linear(x4, w, Some(b))));
    }

    /// A fused projection split into column windows (Q/K/V, Mamba's `x`/`z`): each window
    /// against Burn's `linear` on the narrowed weight and bias, in value and in the gradients
    /// of x and of the whole W and b (the windows' gradients summed by autodiff), with and
    /// without bias; on the plain backend too.
    #[test]
    fn column_windows_match_narrowed_burn_linear() {
        let probe = tensor::<AD, 3>(14, [2, 5, 3]);
        for with_bias in [true, false] {
            let run = |ours: bool| {
                let x = tensor::<AD, 3>(11, [2, 5, 4]).require_grad();
                let w = tensor::<AD, 2>(12, [4, 9]).require_grad();
                let b = tensor::<AD, 1>(13, [9]).require_grad();
                let layer = Linear {
                    weight: burn::module::Param::from_tensor(w.clone()),
                    bias: with_bias.then(|| burn::module::Param::from_tensor(b.clone())),
                };
                let mut loss = Tensor::<AD, 1>::zeros([1], &Default::default());
                let mut ys = Vec::new();
                for (part, start) in [0, 3, 6].into_iter().enumerate() {
                    let y = if ours {
                        apply_columns(&layer, x.clone(), start, 3)
                    } else {
                        let bias = with_bias.then(|| b.clone().narrow(0, start, 3));
                        linear(x.clone(), w.clone().narrow(1, start, 3), bias)
                    };
                    loss = loss
                        + (y.clone() * probe.clone())
                            .sum()
                            .mul_scalar(part as f32 + 1.0);
                    ys.extend(vec_of(y));
                }
                let g = loss.backward();
                let gb = if with_bias {
                    vec_of(b.grad(&g).unwrap())
                } else {
                    vec![]
                };
                (
                    ys,
                    vec_of(x.grad(&g).unwrap()),
                    vec_of(w.grad(&g).unwrap()),
                    gb,
                )
            };
            let (ours, burn) = (run(true), run(false));
            let case = format!("bias {with_bias}");
            assert_outputs_close(&case, &ours, &burn);
        }
        let x = tensor::<Cpu, 2>(15, [6, 4]);
        let w = tensor::<Cpu, 2>(16, [4, 7]);
        let b = tensor::<Cpu, 1>(17, [7]);
        let layer = Linear {
            weight: burn::module::Param::from_tensor(w.clone()),
            bias: Some(burn::module::Param::from_tensor(b.clone())),
        };
        assert_close(
            "plain backend, columns 2..7",
            &vec_of(apply_columns(&layer, x.clone(), 2, 5)),
            &vec_of(linear(x, w.narrow(1, 2, 5), Some(b.narrow(0, 2, 5)))),
        );
    }

    /// A hand-computed case: x = [[1, 2]], W = [[1, 0, 2], [0, 1, −1]], b = [0.5, 0, 0]
    /// → y = [1.5, 2, 0]; with loss Σ y, ∂x = row sums of W = [3, 0], ∂W = xᵀ·1 = [[1,1,1],[2,2,2]],
    /// ∂b = [1, 1, 1].
    #[test]
    fn cpu_affine_hand_computed() {
        let device = Default::default();
        let x = Tensor::<AD, 2>::from_data(TensorData::new(vec![1.0f32, 2.0], [1, 2]), &device)
            .require_grad();
        let w = Tensor::<AD, 2>::from_data(
            TensorData::new(vec![1.0f32, 0.0, 2.0, 0.0, 1.0, -1.0], [2, 3]),
            &device,
        )
        .require_grad();
        let b = Tensor::<AD, 1>::from_data(TensorData::new(vec![0.5f32, 0.0, 0.0], [3]), &device)
            .require_grad();
        let y = affine(x.clone(), w.clone(), Some(b.clone()));
        assert_eq!(vec_of(y.clone()), vec![1.5, 2.0, 0.0]);
        let g = y.sum().backward();
        assert_eq!(vec_of(x.grad(&g).unwrap()), vec![3.0, 0.0]);
        assert_eq!(
            vec_of(w.grad(&g).unwrap()),
            vec![1.0, 1.0, 1.0, 2.0, 2.0, 2.0]
        );
        assert_eq!(vec_of(b.grad(&g).unwrap()), vec![1.0, 1.0, 1.0]);
    }

    /// The GEMM at a size that the `gemm` crate splits over threads (`m · n · k` above its
    /// threading threshold), for every operand layout (row-major or read transposed) and with
    /// `β = 0` and `β = 1`: the same bits on 1, 2 and 3 threads (the split is over output
    /// blocks, never over `k`), and each element within the worst-case f32 rounding bound of
    /// the f64 sum (`(k + 1)·ε·Σ|terms|`).
    #[test]
    fn gemm_is_bit_identical_for_any_thread_count_and_matches_f64() {
        let (m, k, n) = (130, 257, 70);
        let a = data(1, m * k);
        let b = data(2, k * n);
        let c0 = data(3, m * n);
        for (a_t, b_t) in [(false, false), (true, false), (false, true), (true, true)] {
            let sa = if a_t { (1, m) } else { (k, 1) };
            let sb = if b_t { (1, k) } else { (n, 1) };
            for accumulate in [false, true] {
                let run = |threads: usize| {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    let mut c = c0.clone();
                    pool.install(|| gemm((m, k, n), &a, sa, &b, sb, accumulate, &mut c, n));
                    c
                };
                let one = run(1);
                for threads in [2, 3] {
                    assert!(
                        one.iter()
                            .zip(run(threads))
                            .all(|(x, y)| x.to_bits() == y.to_bits()),
                        "{threads} threads: transposed {a_t}/{b_t}, accumulate {accumulate}"
                    );
                }
                for i in 0..m {
                    for j in 0..n {
                        let mut sum = if accumulate {
                            c0[i * n + j] as f64
                        } else {
                            0.0
                        };
                        let mut scale = sum.abs();
                        for p in 0..k {
                            let term =
                                a[i * sa.0 + p * sa.1] as f64 * b[p * sb.0 + j * sb.1] as f64;
                            sum += term;
                            scale += term.abs();
                        }
                        let got = one[i * n + j] as f64;
                        assert!(
                            (got - sum).abs() <= (k + 1) as f64 * f32::EPSILON as f64 * scale,
                            "[{i}, {j}]: {got} vs {sum} (transposed {a_t}/{b_t})"
                        );
                    }
                }
            }
        }
    }
}
