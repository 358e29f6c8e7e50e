//! Moving `f32` data between burn-ndarray tensors and the Rust kernels (fused scan, fused
//! attention): inputs are read in place when they are contiguous `f32` (copied otherwise, e.g.
//! a transposed view or an `f64` tensor); outputs are moved into new tensors without copying.

use std::borrow::Cow;
use std::mem::MaybeUninit;

use std::sync::Arc;

use burn::backend::autodiff::{
    checkpoint::strategy::NoCheckpointing,
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::tensor::ops::FloatTensor;
use burn::tensor::{FloatDType, Shape, TensorData, TensorMetadata};
use burn_ndarray::{NdArray, NdArrayTensor};

use crate::backend::{Cpu, CpuAutodiff};

/// Row-major `f32` values of a tensor: borrowed when contiguous f32, copied otherwise.
pub(crate) fn values(t: &NdArrayTensor) -> Cow<'_, [f32]> {
    if let NdArrayTensor::F32(storage) = t {
        let view = storage.view();
        if let Some(slice) = view.to_slice() {
            return Cow::Borrowed(slice);
        }
        // A strided view, in row-major order, copied a last-axis lane at a time: a lane with
        // unit stride (the common case: heads split as `[B, L, H, d] → [B, H, L, d]` by swapped
        // axes) is one slice copy. Copying element by element through the view's iterator was
        // 28% of a d = 384 GPT training step (the attention kernel's Q/K/V and gradients), and
        // ndarray's lane iterator still cost 3–4% of a d = 96 step (16-wide lanes).
        if view.ndim() == 0 {
            return Cow::Owned(view.iter().copied().collect());
        }
        let shape = view.shape();
        let strides = view.strides();
        let last = shape.len() - 1;
        if strides[last] == 1 && shape.iter().all(|&n| n > 0) {
            let lane = shape[last];
            let lanes: usize = shape[..last].iter().product();
            let base = view.as_ptr();
            let mut out = Vec::with_capacity(view.len());
            let mut index = vec![0usize; last]; // odometer over the leading axes
            let mut offset = 0isize; // of the current lane's first element, in elements
            for _ in 0..lanes {
                // SAFETY: `offset` is the offset of element `(index.., 0)` of the view, and
                // the lane's `lane` elements (unit stride) all lie inside the view's memory.
                out.extend_from_slice(unsafe {
                    std::slice::from_raw_parts(base.offset(offset), lane)
                });
                for axis in (0..last).rev() {
                    index[axis] += 1;
                    offset += strides[axis];
                    if index[axis] < shape[axis] {
                        break;
                    }
                    offset -= strides[axis] * shape[axis] as isize;
                    index[axis] = 0;
                }
            }
            return Cow::Owned(out);
        }
        let mut out = Vec::with_capacity(view.len());
        for lane in view.rows() {
            match lane.as_slice() {
                Some(slice) => out.extend_from_slice(slice),
                None => out.extend(lane.iter().copied()),
            }
        }
        return Cow::Owned(out);
    }
    let cast = <NdArray<f32> as burn::tensor::ops::FloatTensorOps<NdArray<f32>>>::float_cast(
        t.clone(),
        FloatDType::F32,
    );
    match cast {
        NdArrayTensor::F32(storage) => Cow::Owned(storage.view().iter().copied().collect()),
        other => unreachable!("cast to f32 gave {:?}", other.dtype()),
    }
}

/// The row-major `f32` values of `t` as a vector the caller owns: `t`'s own buffer, without a
/// copy, when `t` is the only owner of a contiguous `f32` array (an optimizer's parameter and
/// moments after the backward pass); a copy otherwise. Lets an update run in place, where a
/// fresh output buffer per tensor cost a zero fill and its page faults on every step.
pub(crate) fn into_values(t: NdArrayTensor) -> Vec<f32> {
    match t {
        NdArrayTensor::F32(storage) if storage.is_unique() => {
            let array = storage.into_owned();
            let len = array.len();
            if !array.is_standard_layout() {
                return array.iter().copied().collect();
            }
            match array.try_into_owned_nocopy() {
                Ok(owned) => {
                    let (mut v, offset) = owned.into_raw_vec_and_offset();
                    let offset = offset.unwrap_or(0);
                    if offset != 0 || v.len() != len {
                        v.drain(..offset);
                        v.truncate(len);
                    }
                    v
                }
                Err(shared) => shared.iter().copied().collect(),
            }
        }
        other => values(&other).into_owned(),
    }
}

/// The gradients of a CPU kernel node with up to three parents (an input and its parameters,
/// e.g. `x`, `W`, `b`): asks `backward` for those whose parent is tracked and registers them
/// ([`register_grad`]). `backward(state, ∂y, wanted)` returns one optional gradient per parent
/// slot.
pub(crate) fn register_parent_grads<S, const N: usize>(
    ops: Ops<S, N>,
    grads: &mut Gradients,
    backward: impl FnOnce(&S, &NdArrayTensor, [bool; 3]) -> [Option<NdArrayTensor>; 3],
) {
    let dy = grads.consume::<Cpu>(&ops.node);
    let mut want = [false; 3];
    for (w, parent) in want.iter_mut().zip(&ops.parents) {
        *w = parent.is_some();
    }
    let out = backward(&ops.state, &dy, want);
    for (parent, grad) in ops.parents.into_iter().zip(out) {
        if let (Some(node), Some(grad)) = (parent, grad) {
            // `Gradients` looks a registered gradient up by an autodiff tensor, of which it
            // reads only the node's id: an empty one on the parent's node.
            let id = node.id;
            let key = GradKey {
                primitive: tensor(Vec::new(), [0]),
                node,
                rc: Arc::new(id),
            };
            register_grad(grads, &key, grad);
        }
    }
}

/// An autodiff tensor of the CPU backend, as a key into [`Gradients`].
type GradKey = FloatTensor<CpuAutodiff>;

/// Adds `grad` to the gradient of `key`'s node, as Burn's `Gradients::register` does, but sums with a
/// gradient already registered (a residual stream's input, reached through the skip and through
/// the block) on Rayon's pool, into `grad`'s own buffer. Burn adds the two on the calling thread
/// into a fresh buffer while the pool waits: 5–10% of the calling thread's time in a GPT step.
/// The sum is `grad + old` element by element, as Burn's, so the bits are the same.
fn register_grad(grads: &mut Gradients, key: &GradKey, grad: NdArrayTensor) {
    let id = key.node.id;
    let old = match grads.remove::<Cpu>(key) {
        None => return grads.register::<Cpu>(id, grad),
        Some(old) => old,
    };
    let summable = grad.shape() == old.shape()
        && matches!(&grad, NdArrayTensor::F32(_))
        && matches!(&old, NdArrayTensor::F32(_));
    if !summable {
        // Burn's sum (broadcasts, other dtypes): `old` is gone from the container, so register
        // both.
        grads.register::<Cpu>(id, grad);
        return grads.register::<Cpu>(id, old);
    }
    grads.register::<Cpu>(id, sum(grad, old));
}

/// `a + b` for two `f32` tensors of one shape, element by element: in place in the buffer of
/// whichever operand is the only owner of a row-major one (`a` first; a copy of `a` when neither
/// is, which the crate's callers rarely meet: a sublayer's output and a fresh gradient are
/// theirs alone); in parallel chunks on Rayon's pool when long. Burn's `float_add` runs on the
/// calling thread into a fresh buffer (fresh pages too, when large). Addition commutes, so the
/// bits are Burn's `a + b`.
pub(crate) fn sum(a: NdArrayTensor, b: NdArrayTensor) -> NdArrayTensor {
    let shape = a.shape();
    assert_eq!(shape, b.shape(), "sum: shapes differ");
    let owned = |t: &NdArrayTensor| matches!(t, NdArrayTensor::F32(s) if s.is_unique() && s.view().is_standard_layout());
    let (acc, other) = if owned(&a) || !owned(&b) {
        (a, b)
    } else {
        (b, a)
    };
    let mut acc = into_values(acc); // its own buffer when owned, a copy otherwise
    add_assign(&mut acc, &values(&other));
    tensor(acc, shape)
}

/// Elements per task of the parallel element-wise helpers: 64 KiB of `f32`.
const ELEMENTS_PER_TASK: usize = 16 * 1024;

/// Whether a pass over `len` elements is worth splitting over Rayon's pool.
fn parallel(len: usize) -> bool {
    len > ELEMENTS_PER_TASK && rayon::current_num_threads() > 1
}

/// `acc[i] += x[i]`, in parallel chunks on Rayon's pool when long.
pub(crate) fn add_assign(acc: &mut [f32], x: &[f32]) {
    use rayon::prelude::*;
    assert_eq!(acc.len(), x.len(), "add_assign: lengths differ");
    let add = |(acc, x): (&mut [f32], &[f32])| {
        for (a, &x) in acc.iter_mut().zip(x) {
            *a += x;
        }
    };
    if parallel(acc.len()) {
        acc.par_chunks_mut(ELEMENTS_PER_TASK)
            .zip(x.par_chunks(ELEMENTS_PER_TASK))
            .for_each(add);
    } else {
        add((acc, x));
    }
}

/// A buffer of `len` zeros for a kernel's output, filled in parallel chunks on Rayon's pool
/// when long. `vec![0.0; len]` zero-fills a reused allocation with one `memset` on the calling
/// thread (and touches fresh pages there): 7–12% of its time in a GPT step, with the pool idle.
pub(crate) fn zeroed(len: usize) -> Vec<f32> {
    use rayon::prelude::*;
    if !parallel(len) {
        return vec![0.0; len];
    }
    let mut v: Vec<f32> = Vec::with_capacity(len);
    v.spare_capacity_mut()[..len]
        .par_chunks_mut(ELEMENTS_PER_TASK)
        .for_each(|chunk| chunk.fill(MaybeUninit::new(0.0)));
    // SAFETY: every one of the first `len` elements was written above.
    unsafe { v.set_len(len) };
    v
}

/// Column sums `Σ_r f(r, c)` over the `rows` rows of a `[rows, width]` array, for each column
/// `c`: `term(row, columns, acc)` adds row `row`'s terms of the columns `columns` to `acc`
/// (`acc[j]` is column `columns.start + j`). Blocks of columns run on Rayon's pool; each column
/// is summed over the rows in order, so the result is the serial loop's, bit for bit, on any
/// number of threads. (The bias and norm-parameter gradients: a serial pass on the calling
/// thread before, with the pool idle.)
pub(crate) fn column_sums(
    rows: usize,
    width: usize,
    term: impl Fn(usize, std::ops::Range<usize>, &mut [f32]) + Sync,
) -> Vec<f32> {
    use rayon::prelude::*;
    /// Columns per task: two cache lines of `f32`.
    const COLUMNS_PER_TASK: usize = 32;
    let mut sums = vec![0.0f32; width];
    let block = |(i, acc): (usize, &mut [f32])| {
        let start = i * COLUMNS_PER_TASK;
        for row in 0..rows {
            term(row, start..start + acc.len(), acc);
        }
    };
    if parallel(rows * width) {
        sums.par_chunks_mut(COLUMNS_PER_TASK)
            .enumerate()
            .for_each(block);
    } else {
        sums.chunks_mut(COLUMNS_PER_TASK)
            .enumerate()
            .for_each(block);
    }
    sums
}

/// Records `y` as the output of the CPU kernel node `step` over `parents`, with the state
/// `state()` builds (only when a parent is tracked).
pub(crate) fn track_node<K, const N: usize>(
    step: K,
    parents: [&FloatTensor<CpuAutodiff>; N],
    y: NdArrayTensor,
    state: impl FnOnce() -> K::State,
) -> FloatTensor<CpuAutodiff>
where
    K: Backward<Cpu, N>,
{
    match step
        .prepare::<NoCheckpointing>(parents.map(|p| p.node.clone()))
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(state(), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}

/// Whether `t` is `[B, H, L, d]` read through swapped axes from a contiguous `[B, L, H, d]`
/// tensor: the multi-head attention's split heads (`reshape` then `swap_dims(1, 2)`).
pub(crate) fn is_split_heads(t: &NdArrayTensor) -> bool {
    let NdArrayTensor::F32(storage) = t else {
        return false;
    };
    let view = storage.view();
    let (shape, strides) = (view.shape(), view.strides());
    if shape.len() != 4 {
        return false;
    }
    let [_, h, l, d] = [shape[0], shape[1], shape[2], shape[3]];
    let want = [l * h * d, d, h * d, 1].map(|s| s as isize);
    (0..4).all(|axis| shape[axis] == 1 || strides[axis] == want[axis])
}

/// The memory of a `[B, H, L, w]` tensor and the strides of its `B`, `H` and `L` axes (in
/// elements; the `w` axis has unit stride), so that a kernel can read each `[L, w]` block where
/// it lies: borrowed when the tensor covers one contiguous buffer in some axis order with unit
/// stride along `w` (e.g. split heads, [`is_split_heads`]); otherwise a row-major copy and its
/// strides.
pub(crate) fn heads_memory(t: &NdArrayTensor) -> (Cow<'_, [f32]>, [usize; 3]) {
    let dense = |shape: &[usize]| {
        let [_, h, l, w] = [shape[0], shape[1], shape[2], shape[3]];
        [h * l * w, l * w, w]
    };
    let shape: Vec<usize> = t.shape().iter().copied().collect();
    assert_eq!(shape.len(), 4, "heads_memory: a [B, H, L, w] tensor");
    if let NdArrayTensor::F32(storage) = t {
        let view = storage.view();
        // Axes of one element have no stride to speak of: any value reads index 0.
        let strides: Vec<isize> = (0..4)
            .map(|axis| {
                if shape[axis] > 1 {
                    view.strides()[axis]
                } else {
                    0
                }
            })
            .collect();
        let unit_lanes = shape[3] <= 1 || strides[3] == 1;
        if unit_lanes && strides.iter().all(|&s| s >= 0) {
            // With no negative stride, element (0, 0, 0, 0) is the lowest address: the start
            // of the memory-order slice.
            if let Some(memory) = view.to_slice_memory_order() {
                let [sb, sh, sl] = [0, 1, 2].map(|axis| strides[axis] as usize);
                return (Cow::Borrowed(memory), [sb, sh, sl]);
            }
        }
    }
    (values(t), dense(&shape))
}

/// `v`, the values of a `[B, H, L, d]` tensor, as a tensor of that shape: `v` is row-major
/// `[B, L, H, d]` memory when `tokens` (the layout of split heads, [`is_split_heads`]), row-major
/// `[B, H, L, d]` otherwise. The attention kernels store their outputs and gradients like their
/// inputs: merging the heads back (`swap_dims(1, 2)`, then `reshape` to `[B, L, H·d]`) is then
/// free, where ndarray's reshape of the swapped view copied element by element.
pub(crate) fn heads_tensor(v: Vec<f32>, [b, h, l, d]: [usize; 4], tokens: bool) -> NdArrayTensor {
    use burn::tensor::ops::FloatTensorOps;
    if tokens {
        NdArray::<f32>::float_swap_dims(tensor(v, [b, l, h, d]), 1, 2)
    } else {
        tensor(v, [b, h, l, d])
    }
}

/// A new tensor owning `v` with the given shape.
pub(crate) fn tensor(v: Vec<f32>, shape: impl Into<Shape>) -> NdArrayTensor {
    NdArrayTensor::from_data(TensorData::new(v, shape.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Cpu;
    use burn::tensor::Tensor;

    /// Strided views come out in row-major order of their logical shape: a head split (last
    /// axis contiguous, copied by lanes) and a transpose of the last two axes (lanes with a
    /// stride, copied element by element), against indices computed by hand.
    /// Split heads (`[B, L, H, d]` memory seen as `[B, H, L, d]`) are read in place with their
    /// strides; a tensor the kernels return in that layout holds the same logical values, and
    /// merging its heads back gives contiguous memory. A transpose of the last two axes is
    /// copied to row-major.
    #[test]
    fn head_outputs_are_stored_like_their_inputs() {
        let device = Default::default();
        let (b, l, h, d) = (2, 3, 4, 5);
        let n = b * l * h * d;
        let raw: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let split = Tensor::<Cpu, 1>::from_floats(raw.as_slice(), &device)
            .reshape([b, l, h, d])
            .swap_dims(1, 2); // [B, H, L, d]
        let like = split.clone().into_primitive().tensor();
        assert!(is_split_heads(&like));
        let (memory, strides) = heads_memory(&like);
        assert!(matches!(memory, Cow::Borrowed(_)));
        assert_eq!(strides, [l * h * d, d, h * d]);
        assert_eq!(&memory[..], &raw[..]);
        // The same memory returned as split heads: the same logical values as `like`.
        let out = heads_tensor(raw.clone(), [b, h, l, d], true);
        assert!(is_split_heads(&out));
        assert_eq!(values(&out), values(&like));
        // Merging the heads back reads the original order, from contiguous memory.
        let merged = Tensor::<Cpu, 4>::from_primitive(burn::tensor::TensorPrimitive::Float(out))
            .swap_dims(1, 2); // [B, L, H, d]
        let merged = merged.into_primitive().tensor();
        let NdArrayTensor::F32(storage) = &merged else {
            panic!("f32 tensor expected")
        };
        assert!(storage.view().is_standard_layout());
        assert_eq!(values(&merged).into_owned(), raw);
        // Row-major: a plain tensor, read in place with row-major strides.
        let plain = heads_tensor(raw.clone(), [b, h, l, d], false);
        assert!(!is_split_heads(&plain));
        let (memory, strides) = heads_memory(&plain);
        assert!(matches!(memory, Cow::Borrowed(_)));
        assert_eq!(strides, [h * l * d, l * d, d]);
        // The last two axes swapped (lanes with a stride): copied to row-major.
        let transposed = split.swap_dims(2, 3).into_primitive().tensor(); // [B, H, d, L]
        let (memory, strides) = heads_memory(&transposed);
        assert!(matches!(memory, Cow::Owned(_)));
        assert_eq!(strides, [h * d * l, d * l, l]);
        assert_eq!(memory, values(&transposed));
    }

    #[test]
    fn strided_views_are_read_in_row_major_order() {
        let device = Default::default();
        let (a, b, c) = (2, 3, 4);
        let raw: Vec<f32> = (0..a * b * c).map(|i| i as f32).collect();
        let x = Tensor::<Cpu, 1>::from_floats(raw.as_slice(), &device).reshape([a, b, c]);
        let at = |i: usize, j: usize, k: usize| raw[(i * b + j) * c + k];
        // [a, b, c] → [b, a, c]: the last axis keeps unit stride.
        let swapped = x.clone().swap_dims(0, 1).into_primitive().tensor();
        let want: Vec<f32> = (0..b)
            .flat_map(|j| (0..a).flat_map(move |i| (0..c).map(move |k| (i, j, k))))
            .map(|(i, j, k)| at(i, j, k))
            .collect();
        assert!(matches!(values(&swapped), Cow::Owned(_)));
        assert_eq!(values(&swapped).to_vec(), want);
        // [a, b, c] → [a, c, b]: the last axis has stride c.
        let transposed = x.swap_dims(1, 2).into_primitive().tensor();
        let want: Vec<f32> = (0..a)
            .flat_map(|i| (0..c).flat_map(move |k| (0..b).map(move |j| (i, j, k))))
            .map(|(i, j, k)| at(i, j, k))
            .collect();
        assert_eq!(values(&transposed).to_vec(), want);
    }
}
