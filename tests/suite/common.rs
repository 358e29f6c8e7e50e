//! Helpers shared by the test modules.

use burn::tensor::Tensor;
use seqlayers::backend::{Cpu, CpuDevice};

/// The CPU device.
pub fn dev() -> CpuDevice {
    Default::default()
}

/// A fresh, empty folder under the system's temporary folder, named `prefix-<process>-<n>`:
/// unique per process and call, since the tests run on several threads.
pub fn scratch_dir(prefix: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every float parameter value of `model`, in visiting order.
pub fn parameter_values<B, M>(model: &M) -> Vec<f32>
where
    B: burn::tensor::backend::Backend,
    M: burn::module::Module<B>,
{
    use burn::module::{ModuleVisitor, Param};
    struct Collect(Vec<f32>);
    impl<B: burn::tensor::backend::Backend> ModuleVisitor<B> for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0.extend(
                param
                    .val()
                    .into_data()
                    .convert::<f32>()
                    .to_vec::<f32>()
                    .unwrap(),
            );
        }
    }
    let mut c = Collect(Vec::new());
    model.visit(&mut c);
    c.0
}

/// Runs `f` (a module initialization or a `Tensor::random` draw) with Burn's global generator
/// seeded to `seed`, holding the lock the experiment drivers (`harness::parallel::INIT_LOCK`)
/// take around their own seed-and-init. The generator is one global of the backend and the
/// harness runs tests on several threads: an unlocked draw in one test would shift the numbers
/// another test draws after seeding, so every test that draws from it goes through here.
/// `f` must not call a harness driver (they take the same lock).
pub fn seeded<R>(seed: u64, f: impl FnOnce() -> R) -> R {
    // `CpuAutodiff` delegates its generator to `Cpu`: one seed covers both.
    seeded_on::<Cpu, R>(seed, f)
}

/// [`seeded`] for the generator of backend `B`.
pub fn seeded_on<B: burn::tensor::backend::Backend, R>(seed: u64, f: impl FnOnce() -> R) -> R {
    let _guard = crate::harness::parallel::INIT_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    B::seed(&Default::default(), seed);
    f()
}

/// `config`'s attention layer on the CPU, drawn under [`seeded`] with `seed`.
pub fn attention(
    config: seqlayers::attention::AttentionConfig,
    seed: u64,
) -> seqlayers::attention::MultiHeadAttention<Cpu> {
    seeded(seed, || config.try_init::<Cpu>(&dev()).unwrap())
}

/// Seeds for the draws of one test: 1000, 1001, … in call order, the same at every run. The
/// harness runs each test on a thread of its own, so a per-thread counter numbers the calls of
/// one test whatever the others do.
pub fn next_seed() -> u64 {
    thread_local! {
        static NEXT: std::cell::Cell<u64> = const { std::cell::Cell::new(1000) };
    }
    NEXT.with(|n| {
        let seed = n.get();
        n.set(seed + 1);
        seed
    })
}

/// The values of a tensor, row-major.
pub fn values<const D: usize>(t: Tensor<Cpu, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

/// Largest element-wise absolute difference of two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Copies every float parameter of `from` (any backend) into `to` (same module structure, any
/// backend), in visiting order: the same weights on two backends.
pub fn copy_params<B1, B2, M1, M2>(from: &M1, to: M2) -> M2
where
    B1: burn::tensor::backend::Backend,
    B2: burn::tensor::backend::Backend,
    M1: burn::module::Module<B1>,
    M2: burn::module::Module<B2>,
{
    use burn::module::{ModuleMapper, ModuleVisitor, Param};
    use burn::tensor::TensorData;
    struct Collect(Vec<TensorData>);
    impl<B: burn::tensor::backend::Backend> ModuleVisitor<B> for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0.push(param.val().into_data().convert::<f64>());
        }
    }
    struct Replace(std::vec::IntoIter<TensorData>);
    impl<B: burn::tensor::backend::Backend> ModuleMapper<B> for Replace {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let data = self.0.next().expect("same structure");
            param.map(|t| {
                let device = t.device();
                assert_eq!(t.dims().to_vec(), data.shape.to_vec(), "same shapes");
                Tensor::from_data(data.convert::<B::FloatElem>(), &device)
            })
        }
    }
    let mut collect = Collect(Vec::new());
    from.visit(&mut collect);
    let mut replace = Replace(collect.0.into_iter());
    let to = to.map(&mut replace);
    assert!(replace.0.next().is_none(), "same number of parameters");
    to
}

/// `module` with every parameter a new autodiff leaf (same values and ids). Tests that run
/// several `backward()` passes through one module use a fresh copy for each: in Burn 0.21 a
/// leaf that already went through a `backward()` can lose its gradient when another thread's
/// `backward()` sweeps the graphs at the same moment (tracel-ai/burn#5573), and the test
/// harness runs tests on several threads. Training is not affected: the optimizer makes every
/// parameter a new leaf at each step. Lazily initialized parameters must be drawn first.
pub fn fresh_leaves<M>(module: &M) -> M
where
    M: burn::module::Module<seqlayers::backend::CpuAutodiff>,
{
    use burn::module::{ModuleMapper, Param};
    use seqlayers::backend::CpuAutodiff as Ad;
    struct Fresh;
    impl ModuleMapper<Ad> for Fresh {
        fn map_float<const D: usize>(
            &mut self,
            param: Param<Tensor<Ad, D>>,
        ) -> Param<Tensor<Ad, D>> {
            let (id, tensor, mapper) = param.consume();
            let fresh = Tensor::<Ad, D>::from_inner(tensor.inner()).require_grad();
            Param::from_mapped_value(id, fresh, mapper)
        }
    }
    module.clone().map(&mut Fresh)
}

/// `layer.forward_with_state(x, layer.init_state(B))`: any mixer or block from its empty state,
/// returning the state after `x` as well.
pub fn from_zero<B: burn::tensor::backend::Backend, M: seqlayers::nn::Mixer<B>>(
    layer: &M,
    x: Tensor<B, 3>,
) -> seqlayers::Result<(Tensor<B, 3>, M::State)> {
    let state = layer.init_state(x.dims()[0], &x.device());
    layer.forward_with_state(x, state)
}
