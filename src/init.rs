//! The one initialization rule of the crate: every `try_init` draws all of its parameters
//! before it returns.
//!
//! Burn's `nn` layers draw their weights lazily, at the first use of each parameter. Lazy draws
//! made from several threads (e.g. trainings run side by side) would interleave on the
//! backend's global generator, so the same seed could give different models. [`materialize`]
//! forces the draws, in field order, at construction time.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// Reads every float parameter of `module` once, which runs its pending lazy initializers, and
/// returns the module.
pub(crate) fn materialize<B: Backend, M: Module<B>>(module: M) -> M {
    module.visit(&mut Materialize);
    module
}

/// Reads each float parameter.
struct Materialize;

impl<B: Backend> ModuleVisitor<B> for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let _ = param.val();
    }
}
