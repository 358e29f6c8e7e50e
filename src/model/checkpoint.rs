//! Saving and loading trained models with their configuration, through Burn's recorders.
//!
//! A checkpoint is a folder with three files: `config.json` (the model's Burn `Config`, as
//! JSON), `model.mpk` (the weights, Burn's named MessagePack record at full precision) and
//! `model.sum` (the length and FNV-1a 64 checksum of `model.mpk`, then the path and shape of
//! every tensor in it).
//! Loading rebuilds the model from the saved configuration, verifies the checksum and the
//! tensor list against the configuration (when the file is there: checkpoints written before it
//! existed load without it), then loads the weights, checking every tensor's shape again. A missing file, a
//! truncated or corrupt record (a flipped byte included, even inside a weight, where the record
//! itself would still decode), JSON of another schema, a missing tensor or weights of another
//! configuration are a [`SeqError::Checkpoint`] that names the problem, never a panic; a folder
//! that cannot be written is a [`SeqError::Write`].

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
/// File name of the weights' checksum inside a checkpoint folder.
pub const CHECKSUM_FILE: &str = "model.sum";

/// 64-bit FNV-1a of `bytes`.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The checksum line of `bytes`: `fnv1a64 <hex> <length>`.
fn checksum_line(bytes: &[u8]) -> String {
    format!("fnv1a64 {:016x} {}", fnv1a64(bytes), bytes.len())
}

fn recorder() -> NamedMpkFileRecorder<FullPrecisionSettings> {
    NamedMpkFileRecorder::<FullPrecisionSettings>::new()
}

fn problem(path: &Path, problem: impl Into<String>) -> SeqError {
    SeqError::Checkpoint {
        path: path.display().to_string(),
        problem: problem.into(),
    }
}

/// One line of the tensor manifest: `<path> <shape>`.
fn manifest_line((name, shape): &(String, Vec<usize>)) -> String {
    format!("{name} {shape:?}")
}

/// Errors unless `weights` matches the checksum file next to it and the tensors it lists
/// (`model.sum` holds the checksum line, then one [`manifest_line`] per tensor) are those of
/// the configuration, `expected`. Checked before the record is decoded, because Burn panics
/// when a record holds another layer kind than the module. No file: nothing to check.
fn verify_sum(dir: &Path, weights: &Path, expected: &[(String, Vec<usize>)]) -> Result<()> {
    let sum_path = dir.join(CHECKSUM_FILE);
    if !sum_path.is_file() {
        return Ok(());
    }
    let text = std::fs::read_to_string(&sum_path).map_err(|e| SeqError::read(&sum_path, e))?;
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let saved = lines.next().unwrap_or_default();
    let bytes = std::fs::read(weights).map_err(|e| SeqError::read(weights, e))?;
    let got = checksum_line(&bytes);
    if saved != got {
        return Err(problem(
            weights,
            format!(
                "the weights do not match {CHECKSUM_FILE} (saved `{saved}`, file has `{got}`): the \
                 file was corrupted or replaced after saving; restore it or save the checkpoint again"
            ),
        ));
    }
    let manifest: Vec<&str> = lines.collect();
    if manifest.is_empty() {
        return Ok(());
    }
    let wanted: Vec<String> = expected.iter().map(manifest_line).collect();
    for (have, want) in manifest.iter().zip(&wanted) {
        if *have != want.as_str() {
            return Err(problem(
                weights,
                format!(
                    "the weights hold tensor `{have}` where {CONFIG_FILE} asks for `{want}`; the \
                     weights belong to another configuration (use the config.json saved with them)"
                ),
            ));
        }
    }
    if manifest.len() != wanted.len() {
        return Err(problem(
            weights,
            format!(
                "the weights hold {} tensors where {CONFIG_FILE} asks for {}; the weights belong \
                 to another configuration (use the config.json saved with them)",
                manifest.len(),
                wanted.len()
            ),
        ));
    }
    Ok(())
}

/// The message of a caught panic.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// Saves `module` and its `config` into the folder `dir` (created if needed), with the
/// checksum of the weights.
///
/// Errors with [`SeqError::Write`] when the folder or a file cannot be written (e.g. `dir` is
/// below a regular file, or read-only).
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
    let weights = dir.join(format!("{WEIGHTS_STEM}.mpk"));
    let manifest = shapes(&module);
    module
        .save_file(dir.join(WEIGHTS_STEM), &recorder())
        .map_err(|e| SeqError::Write {
            path: weights.display().to_string(),
            message: format!("writing the weights failed: {e}"),
        })?;
    let bytes = std::fs::read(&weights).map_err(|e| SeqError::read(&weights, e))?;
    let sum_path = dir.join(CHECKSUM_FILE);
    let mut sum = checksum_line(&bytes) + "\n";
    for entry in &manifest {
        sum += &(manifest_line(entry) + "\n");
    }
    std::fs::write(&sum_path, sum).map_err(|e| SeqError::write(&sum_path, e))
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
    let fresh = init(&config, device).map_err(|e| {
        problem(
            &config_path,
            format!("the saved configuration does not build a model ({e}); fix or replace it"),
        )
    })?;
    let expected = shapes(&fresh);
    let weights: PathBuf = dir.join(format!("{WEIGHTS_STEM}.mpk"));
    if !weights.is_file() {
        return Err(problem(
            dir,
            format!("no {WEIGHTS_STEM}.mpk next to {CONFIG_FILE}"),
        ));
    }
    verify_sum(dir, &weights, &expected)?;
    // Burn's derived `load_record` panics on a record of another enum variant (another layer
    // kind); `model.sum` catches that first, and for checkpoints without one the panic is
    // turned into the error here.
    let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        fresh.load_file(dir.join(WEIGHTS_STEM), &recorder(), device)
    }))
    .map_err(|panic| {
        problem(
            &weights,
            format!(
                "the weights do not fit {CONFIG_FILE} ({}); they belong to another configuration \
                 or the file is corrupt",
                panic_message(panic.as_ref())
            ),
        )
    })?
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
