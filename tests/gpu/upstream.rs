//! Behaviour of Burn 0.21's wgpu backend that the crate works around, pinned so that a Burn
//! upgrade that fixes it shows up here (and the workaround can go).

use burn::tensor::{Distribution, Tensor};
use seqlayers::backend::Wgpu;

use crate::gpu;

fn flat<const D: usize>(t: Tensor<Wgpu, D>) -> Vec<f64> {
    t.into_data().convert::<f64>().to_vec::<f64>().unwrap()
}

/// The first-column slice `w[:, 0..1]` of a `[16, 9]` tensor (shape `[16, 1]`, row stride 9, no
/// offset) is read as if its rows were adjacent by `matmul` and `reshape`; an element-wise op first (the
/// workaround in `src/linear.rs::apply_columns`) gives the right product.
#[test]
fn a_one_column_slice_is_misread_by_matmul_unless_copied() {
    let dev = gpu();
    let x = Tensor::<Wgpu, 3>::random([2, 13, 16], Distribution::Uniform(-1.0, 1.0), &dev);
    let w = Tensor::<Wgpu, 2>::random([16, 9], Distribution::Uniform(-1.0, 1.0), &dev);
    let (xs, ws) = (flat(x.clone()), flat(w.clone()));
    let column = 0; // with an offset (column 2, say) Burn reads it right
    let want: Vec<f64> = (0..26)
        .map(|r| (0..16).map(|k| xs[r * 16 + k] * ws[k * 9 + column]).sum())
        .collect();
    let err = |got: Vec<f64>| {
        got.iter()
            .zip(&want)
            .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()))
    };
    // `w` stays alive, as a parameter does: the element-wise op cannot then run in place (in
    // place it would keep the slice's strides, and the misreading).
    let slice = w.clone().narrow(1, column, 1); // [16, 1]
    let misread = err(flat(x.clone().matmul(slice.clone().unsqueeze::<3>())));
    let copied = err(flat(x.matmul(slice.mul_scalar(1.0).unsqueeze::<3>())));
    drop(w);
    assert!(
        copied < 1e-5,
        "the copied slice multiplies right: error {copied:.3e}"
    );
    assert!(
        misread > 1e-2,
        "Burn now reads the one-column slice right (error {misread:.3e}): drop the copy in \
         src/linear.rs::apply_columns and this test"
    );
}
