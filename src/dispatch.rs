//! Which implementation each fused operation takes on a backend: the one routing helper of the
//! crate, and the query that reports it ([`kernels`], [`kernel_path`]).
//!
//! The crate has ten custom operations ([`FusedOp`]): the token-wise linear map, the causal
//! conv + SiLU, the GELU/SiLU/softplus activations, the selective scan, scaled dot-product
//! attention, the LSTM recurrence, LayerNorm/RMSNorm, the Adam/AdamW update, a reshape that
//! does not copy and the residual connection's add. Each has a Rust
//! kernel with a hand-written backward for the CPU backend (`NdArray<f32>`, and
//! `Autodiff<NdArray<f32>>` where the kernel's backward is one graph node). On the CubeCL GPU
//! backends (`Wgpu`, `Cuda`, without Burn's fusion) the selective scan and attention run as
//! CubeCL kernels (one node with the kernels' backward under `Autodiff`). Every other backend and op (`NdArray<f64>`, `Candle`, `Fusion`
//! wrappers, `Autodiff` with another checkpointing strategy) runs the same operation written in
//! Burn tensor ops.
//!
//! # Why a run-time check and not a backend trait
//! Burn's own pattern for custom kernels (`examples/custom-wgpu-kernel`) is an extension trait
//! on `Backend` with a default body in tensor ops (the `_reference`), implemented for the
//! backends that have a kernel, and layers generic over that trait. Here that would mean every
//! layer, model and user function bounded by `B: SeqBackend`, and an `impl SeqBackend` for every
//! backend a user might pick: the crate cannot write one blanket `impl<B: Backend>` with the
//! tensor-op defaults and also the `NdArray<f32>` one (overlapping impls, no specialization in
//! stable Rust), and a user cannot implement it for `Wgpu` (orphan rule: neither the trait nor
//! the type is theirs). So the layers stay generic over any `burn::tensor::backend::Backend`, and
//! [`route`] compares `B` with the backends that have kernels at run time (a `TypeId` check per
//! call, nanoseconds beside the operation). The kernels themselves still sit behind crate traits
//! (`AttentionBackend`, `SsmBackend`) with tensor-op default bodies, in Burn's style.
//!
//! A fallback that costs memory or time (the scan's `[B, L, E, N]` tensors, attention's
//! `[B, H, Lq, Lk]` weights, the LSTM's ~20 tracked ops per token) is reported once per
//! operation and backend with a `log` warning, like nanoGPT's "using slow attention". Install a
//! logger (`env_logger`, `tracing-log`, …) to see it.

use std::any::{Any, TypeId, type_name};
use std::fmt;
use std::sync::Mutex;

use burn::tensor::backend::Backend;

use crate::backend::{Cpu, CpuAutodiff};

/// The crate's custom operations, each with a fast path on some backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FusedOp {
    /// Token-wise affine map `x · W + b` (every projection).
    Linear,
    /// Mamba's causal depthwise convolution followed by SiLU.
    ConvSilu,
    /// Element-wise GELU, SiLU and softplus.
    Activation,
    /// The selective scan (`ScanKind::Fused`).
    Scan,
    /// Scaled dot-product attention with an additive bias and RoPE.
    Attention,
    /// The LSTM recurrence.
    Lstm,
    /// LayerNorm / RMSNorm over the last axis.
    Norm,
    /// The Adam / AdamW update of a parameter (on the optimizer's inner backend).
    Adam,
    /// `reshape`, without copying a row-major tensor (burn-ndarray 0.21 copies).
    Reshape,
    /// The residual connection's sum `x + y`, in place and in parallel.
    Add,
}

impl FusedOp {
    /// Every operation.
    pub const ALL: [FusedOp; 10] = [
        FusedOp::Linear,
        FusedOp::ConvSilu,
        FusedOp::Activation,
        FusedOp::Scan,
        FusedOp::Attention,
        FusedOp::Lstm,
        FusedOp::Norm,
        FusedOp::Adam,
        FusedOp::Reshape,
        FusedOp::Add,
    ];

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            FusedOp::Linear => "linear",
            FusedOp::ConvSilu => "conv+silu",
            FusedOp::Activation => "gelu/silu/softplus",
            FusedOp::Scan => "selective scan",
            FusedOp::Attention => "attention",
            FusedOp::Lstm => "lstm recurrence",
            FusedOp::Norm => "layer/rms norm",
            FusedOp::Adam => "adam update",
            FusedOp::Reshape => "reshape",
            FusedOp::Add => "residual add",
        }
    }

    /// What the tensor-op fallback costs, for the warning; `None` when it costs about the same
    /// as the kernel (Burn's own `linear`, element-wise ops, shifted multiply-adds).
    fn fallback_cost(self) -> Option<&'static str> {
        match self {
            FusedOp::Scan => Some(
                "the parallel scan in tensor ops, which allocates [B, L, E, N] tensors (the \
                 kernel keeps [B, E, N])",
            ),
            FusedOp::Attention => Some(
                "attention in tensor ops, which keeps the [B, H, Lq, Lk] weights for the backward",
            ),
            FusedOp::Lstm => Some("the recurrence in tensor ops, about 20 tracked ops per token"),
            FusedOp::Linear
            | FusedOp::ConvSilu
            | FusedOp::Activation
            | FusedOp::Norm
            | FusedOp::Adam
            | FusedOp::Reshape
            | FusedOp::Add => None,
        }
    }

    /// The path on a CubeCL GPU backend (`Wgpu`, `Cuda`), plain or under `Autodiff`.
    #[cfg_attr(not(any(feature = "wgpu", feature = "cuda")), allow(dead_code))]
    fn gpu_path(self, autodiff: bool) -> KernelPath {
        match (self, autodiff) {
            (FusedOp::Scan | FusedOp::Attention, false) => KernelPath::GpuKernel,
            (FusedOp::Scan | FusedOp::Attention, true) => KernelPath::GpuKernelNode,
            _ => KernelPath::TensorOps,
        }
    }
}

impl fmt::Display for FusedOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How an operation runs on a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KernelPath {
    /// The crate's Rust CPU kernel (`NdArray<f32>`).
    CpuKernel,
    /// The CPU kernel, with its hand-written backward as one autodiff node
    /// (`Autodiff<NdArray<f32>>`).
    CpuKernelNode,
    /// The crate's CubeCL kernel on a GPU backend (`Wgpu`, `Cuda`).
    GpuKernel,
    /// The CubeCL kernel, with its CubeCL backward as one autodiff node (`Autodiff<Wgpu>`,
    /// `Autodiff<Cuda>`).
    GpuKernelNode,
    /// Burn tensor ops, differentiated op by op if the backend is an `Autodiff`.
    TensorOps,
}

impl KernelPath {
    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            KernelPath::CpuKernel => "cpu kernel",
            KernelPath::CpuKernelNode => "cpu kernel + backward node",
            KernelPath::GpuKernel => "cubecl kernel",
            KernelPath::GpuKernelNode => "cubecl kernel + backward node",
            KernelPath::TensorOps => "tensor ops",
        }
    }
}

impl fmt::Display for KernelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The backends the crate has kernels for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Cpu,
    CpuAutodiff,
    /// A CubeCL backend (`Wgpu`, `Cuda`).
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    Gpu,
    /// `Autodiff` over a CubeCL backend.
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    GpuAutodiff,
    Other,
}

fn target<B: Backend>() -> Target {
    let id = TypeId::of::<B>();
    if id == TypeId::of::<Cpu>() {
        return Target::Cpu;
    }
    if id == TypeId::of::<CpuAutodiff>() {
        return Target::CpuAutodiff;
    }
    #[cfg(feature = "wgpu")]
    {
        use crate::backend::{Wgpu, WgpuAutodiff};
        if id == TypeId::of::<Wgpu>() {
            return Target::Gpu;
        }
        if id == TypeId::of::<WgpuAutodiff>() {
            return Target::GpuAutodiff;
        }
    }
    #[cfg(feature = "cuda")]
    {
        use crate::backend::{Cuda, CudaAutodiff};
        if id == TypeId::of::<Cuda>() {
            return Target::Gpu;
        }
        if id == TypeId::of::<CudaAutodiff>() {
            return Target::GpuAutodiff;
        }
    }
    Target::Other
}

/// The path `op` takes on backend `B`.
///
/// ```
/// use seqlayers::backend::{Cpu, CpuAutodiff};
/// use seqlayers::{FusedOp, KernelPath, kernel_path};
///
/// assert_eq!(kernel_path::<CpuAutodiff>(FusedOp::Scan), KernelPath::CpuKernelNode);
/// assert_eq!(kernel_path::<Cpu>(FusedOp::Attention), KernelPath::CpuKernel);
/// type F64 = burn_ndarray::NdArray<f64>;
/// assert_eq!(kernel_path::<F64>(FusedOp::Lstm), KernelPath::TensorOps);
/// ```
#[cfg_attr(
    not(any(feature = "wgpu", feature = "cuda")),
    allow(unused_variables) // `op` matters on the GPU backends only
)]
pub fn kernel_path<B: Backend>(op: FusedOp) -> KernelPath {
    match target::<B>() {
        Target::Cpu => KernelPath::CpuKernel,
        Target::CpuAutodiff => KernelPath::CpuKernelNode,
        #[cfg(any(feature = "wgpu", feature = "cuda"))]
        Target::Gpu => op.gpu_path(false),
        #[cfg(any(feature = "wgpu", feature = "cuda"))]
        Target::GpuAutodiff => op.gpu_path(true),
        Target::Other => KernelPath::TensorOps,
    }
}

/// The path of every operation on backend `B`, in [`FusedOp::ALL`] order.
pub fn kernels<B: Backend>() -> [(FusedOp, KernelPath); 10] {
    FusedOp::ALL.map(|op| (op, kernel_path::<B>(op)))
}

/// A value of the caller's backend `B` moved to the concrete type of the path it takes:
/// `C` on `NdArray<f32>`, `A` on `Autodiff<NdArray<f32>>`, unchanged otherwise.
pub(crate) enum Routed<T, C, A> {
    /// On the CPU kernel.
    Cpu(C),
    /// On the CPU kernel with its autodiff node.
    CpuAutodiff(A),
    /// On a GPU backend's kernel or node (the caller casts to the concrete backend with
    /// `on_gpu!`).
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    Gpu(T),
    /// On tensor ops.
    Other(T),
}

/// Routes `value` (the inputs of `op` on backend `B`, e.g. `FusedScanInput<B>`) to the path
/// [`kernel_path`] names: the one routing helper of every fused op. `C` and `A` are the same
/// input type on `Cpu` and `CpuAutodiff`. Warns once per op and backend when the fallback is
/// costly.
pub(crate) fn route<B: Backend, T: Any, C: Any, A: Any>(op: FusedOp, value: T) -> Routed<T, C, A> {
    match kernel_path::<B>(op) {
        KernelPath::CpuKernel => Routed::Cpu(same(value)),
        KernelPath::CpuKernelNode => Routed::CpuAutodiff(same(value)),
        #[cfg(any(feature = "wgpu", feature = "cuda"))]
        KernelPath::GpuKernel | KernelPath::GpuKernelNode => Routed::Gpu(value),
        #[cfg(not(any(feature = "wgpu", feature = "cuda")))]
        KernelPath::GpuKernel | KernelPath::GpuKernelNode => {
            unreachable!("no GPU backend in this build")
        }
        KernelPath::TensorOps => {
            warn_fallback::<B>(op);
            Routed::Other(value)
        }
    }
}

/// Logs once per `(op, B)` that `op` falls back to a costly tensor-op formulation on `B`.
fn warn_fallback<B: Backend>(op: FusedOp) {
    static WARNED: Mutex<Vec<(FusedOp, TypeId)>> = Mutex::new(Vec::new());
    let Some(cost) = op.fallback_cost() else {
        return;
    };
    let key = (op, TypeId::of::<B>());
    let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
    if warned.contains(&key) {
        return;
    }
    warned.push(key);
    drop(warned);
    log::warn!(
        "seqlayers: no fused {op} kernel for backend `{}`; using {cost} (reported once)",
        type_name::<B>()
    );
}

/// Runs `$body` with `$value` cast to the concrete GPU backend that `$B` is (`Wgpu`,
/// `Autodiff<Wgpu>`, `Cuda` or `Autodiff<Cuda>`), the type named `$G` inside `$body`, and
/// returns its result cast back: the way from [`Routed::Gpu`] to a backend's trait impl.
/// `return`s from the enclosing function.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
macro_rules! on_gpu {
    ($B:ty, $value:expr, |$v:ident: $G:ident| $body:expr) => {{
        let value = $value;
        #[cfg(feature = "wgpu")]
        crate::dispatch::on_gpu!(@try $B, value, crate::backend::Wgpu, |$v: $G| $body);
        #[cfg(feature = "wgpu")]
        crate::dispatch::on_gpu!(@try $B, value, crate::backend::WgpuAutodiff, |$v: $G| $body);
        #[cfg(feature = "cuda")]
        crate::dispatch::on_gpu!(@try $B, value, crate::backend::Cuda, |$v: $G| $body);
        #[cfg(feature = "cuda")]
        crate::dispatch::on_gpu!(@try $B, value, crate::backend::CudaAutodiff, |$v: $G| $body);
        unreachable!("routed to a GPU path on a backend that has none")
    }};
    (@try $B:ty, $value:ident, $concrete:ty, |$v:ident: $G:ident| $body:expr) => {
        if ::std::any::TypeId::of::<$B>() == ::std::any::TypeId::of::<$concrete>() {
            #[allow(dead_code)]
            type $G = $concrete;
            let $v = crate::dispatch::same($value);
            return crate::dispatch::same($body);
        }
    };
}
#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub(crate) use on_gpu;

/// `t as U` where `T` and `U` are the same type at run time (the way to a concrete backend's
/// type after [`route`], and back).
pub(crate) fn same<T: Any, U: Any>(t: T) -> U {
    match (Box::new(t) as Box<dyn Any>).downcast::<U>() {
        Ok(u) => *u,
        Err(_) => unreachable!(
            "routing casts a type only to itself: {} is not {}",
            type_name::<T>(),
            type_name::<U>()
        ),
    }
}
