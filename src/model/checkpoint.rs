//! Saving and loading trained models with their configuration, through Burn's recorders.
//!
//! A checkpoint is a folder with two files: `config.json` (the model's Burn `Config`, as
//! JSON) and `model.mpk` (the weights, Burn's named MessagePack record at full precision).
//! Loading rebuilds the model from the saved configuration and then loads the weights, checking
//! every tensor's shape against the configuration, so a missing file, a truncated or corrupt
//! record, a missing tensor or weights of another configuration are a [`SeqError::Checkpoint`]
//! that names the problem, never a panic.

use std::path::{Path, PathBuf};

use burn::config::Config;
use burn::module::{Module, ModuleVisitor, Param};
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::error::{Result, SeqError};
use crate::model::{LanguageModel, LanguageModelConfig};

/// File name of the configuration inside a checkpoint folder.
pub const CONFIG_FILE: &str = "config.json";
/// File stem of the weights (the recorder adds `.mpk`).
pub const WEIGHTS_STEM: &str = "model";

fn recorder() -> NamedMpkFileRecorder<FullPrecisionSettings> {
    NamedMpkFileRecorder::<FullPrecisionSettings>::new()
}

fn problem(path: &Path, problem: impl Into<String>) -> SeqError {
    SeqError::Checkpoint {
        path: path.display().to_string(),
        problem: problem.into(),
    }
}

/// Saves `module` and its `config` into the folder `dir` (created if needed).
pub fn save_checkpoint<B: Backend, M: Module<B>, C: Config>(
    module: M,
    config: &C,
    dir: &Path,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| SeqError::write(dir, e))?;
    let config_path = dir.join(CONFIG_FILE);
    config
        .save(&config_path)
        .map_err(|e| SeqError::write(&config_path, e))?;
    module
        .save_file(dir.join(WEIGHTS_STEM), &recorder())
        .map_err(|e| problem(dir, format!("writing the weights failed: {e}")))
}

/// The float tensors of a module as `(path, shape)`, in visiting order.
#[derive(Default)]
struct Shapes {
    path: Vec<String>,
    found: Vec<(String, Vec<usize>)>,
}

impl<B: Backend> ModuleVisitor<B> for Shapes {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.found
            .push((self.path.join("."), param.val().dims().to_vec()));
    }
}

fn shapes<B: Backend, M: Module<B>>(module: &M) -> Vec<(String, Vec<usize>)> {
    let mut visitor = Shapes::default();
    module.visit(&mut visitor);
    visitor.found
}

/// Loads the configuration of the checkpoint in `dir`, builds the module with `init`, and
/// loads its weights, checking every tensor's shape.
pub fn load_checkpoint<B, M, C>(
    dir: &Path,
    device: &B::Device,
    init: impl FnOnce(&C, &B::Device) -> Result<M>,
) -> Result<(M, C)>
where
    B: Backend,
    M: Module<B>,
    C: Config,
{
    let config_path = dir.join(CONFIG_FILE);
    if !config_path.is_file() {
        return Err(problem(
            dir,
            format!("no {CONFIG_FILE}; give the folder a checkpoint was saved to"),
        ));
    }
    let config = C::load(&config_path).map_err(|e| {
        problem(
            &config_path,
            format!(
                "not a valid configuration of this model ({e}); was it saved by another model kind or another version of seqlayers?"
            ),
        )
    })?;
    let fresh = init(&config, device)?;
    let expected = shapes(&fresh);
    let weights: PathBuf = dir.join(format!("{WEIGHTS_STEM}.mpk"));
    if !weights.is_file() {
        return Err(problem(
            dir,
            format!("no {WEIGHTS_STEM}.mpk next to {CONFIG_FILE}"),
        ));
    }
    let loaded = fresh
        .load_file(dir.join(WEIGHTS_STEM), &recorder(), device)
        .map_err(|e| {
            problem(
                &weights,
                format!("the weights cannot be read ({e}); the file is truncated, corrupt or misses a tensor"),
            )
        })?;
    let got = shapes(&loaded);
    for ((name, want), (_, have)) in expected.iter().zip(&got) {
        if want != have {
            return Err(problem(
                &weights,
                format!(
                    "tensor `{name}` has shape {have:?} but {CONFIG_FILE} asks for {want:?}; the weights belong to another configuration"
                ),
            ));
        }
    }
    if expected.is_empty() || expected.len() != got.len() {
        return Err(problem(
            &weights,
            format!(
                "{} tensors where the configuration has {}",
                got.len(),
                expected.len()
            ),
        ));
    }
    Ok((loaded, config))
}

/// [`load_checkpoint`] for a [`LanguageModel`].
pub fn load_language_model<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<(LanguageModel<B>, LanguageModelConfig)> {
    load_checkpoint(dir, device, |c: &LanguageModelConfig, d| c.try_init(d))
}
