//! Run-time routing of the fused operations to the backends that have a kernel.
//!
//! Every layer is generic over any `B: Backend`. The fused scan and fused attention have Rust
//! kernels for the CPU backend (`NdArray<f32>` and its `Autodiff`) and a custom autodiff node
//! for CUDA; for any other backend (`Wgpu`, `NdArray<f64>`, `Candle`, `Fusion` wrappers, other
//! checkpointing strategies) they run the tensor-op formulation. A trait bound would have
//! forced users to implement a crate trait for their backend, which the orphan rule forbids, so
//! the choice is made here by comparing types at run time (a `TypeId` check per call).

use std::any::Any;

/// `Ok(t as U)` when `T` and `U` are the same type, `Err(t)` otherwise.
pub(crate) fn cast<T: Any, U: Any>(t: T) -> std::result::Result<U, T> {
    let boxed: Box<dyn Any> = Box::new(t);
    match boxed.downcast::<U>() {
        Ok(u) => Ok(*u),
        Err(boxed) => match boxed.downcast::<T>() {
            Ok(t) => Err(*t),
            Err(_) => unreachable!("a boxed T is a T"),
        },
    }
}

/// `t as U` where the caller knows `T = U` (the way back after a successful [`cast`]).
pub(crate) fn same<T: Any, U: Any>(t: T) -> U {
    match cast::<T, U>(t) {
        Ok(u) => u,
        Err(_) => unreachable!("dispatch only casts a type back to itself"),
    }
}
