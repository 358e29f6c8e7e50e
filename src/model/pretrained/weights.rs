//! The checkpoint side of every loader: one `model.safetensors` read through burn-store, its
//! tensors checked against the list a configuration needs, then applied to a crate module with
//! key remapping and adapters.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use burn::config::Config;
use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Element, Shape, Tensor, TensorData};
use burn_store::{
    KeyRemapper, ModuleAdapter, ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter,
    SafetensorsStore, TensorSnapshot,
};

use crate::error::{Result, SeqError};

/// A [`SeqError::Checkpoint`] about `path`.
pub(super) fn problem(path: &Path, problem: impl Into<String>) -> SeqError {
    SeqError::Checkpoint {
        path: path.display().to_string(),
        problem: problem.into(),
    }
}

/// Reads `config.json` of the checkpoint folder `dir` as `C` (any serde type with
/// [`Config`]); a missing file or JSON that does not fit `C` is a [`SeqError::Checkpoint`].
pub(super) fn read_config<C: Config>(dir: &Path) -> Result<C> {
    let path = dir.join("config.json");
    if !path.is_file() {
        return Err(problem(
            &path,
            "no such file; a pretrained checkpoint folder holds config.json and \
             model.safetensors (as Hugging Face's save_pretrained writes them)",
        ));
    }
    C::load(&path).map_err(|e| problem(&path, format!("not a configuration of this model: {e}")))
}

/// One tensor a configuration needs: its name in the checkpoint and its shape there
/// (PyTorch's layout: `[out, in]` for a linear weight).
#[derive(Debug, Clone)]
pub(super) struct Expected {
    /// The name in the file.
    pub key: String,
    /// An older name the same tensor may have instead (`LayerNorm.gamma` for `.weight`).
    pub alias: Option<String>,
    /// The shape in the file.
    pub shape: Vec<usize>,
}

impl Expected {
    /// `key` with `shape`.
    pub fn new(key: impl Into<String>, shape: &[usize]) -> Self {
        Expected {
            key: key.into(),
            alias: None,
            shape: shape.to_vec(),
        }
    }

    /// The same tensor, also accepted under `alias`.
    pub fn or(mut self, alias: impl Into<String>) -> Self {
        self.alias = Some(alias.into());
        self
    }
}

/// A `model.safetensors` file opened through burn-store: the name, dtype and shape of every
/// tensor (the data stays in the file until it is applied).
pub(super) struct Weights {
    /// The file.
    pub path: PathBuf,
    /// The store without remapping: snapshots under the file's own names.
    store: SafetensorsStore,
    /// Name → (dtype, shape) of every tensor in the file.
    tensors: BTreeMap<String, (DType, Vec<usize>)>,
}

impl Weights {
    /// Opens `dir/model.safetensors` and reads its header. A missing, unreadable, truncated or
    /// corrupt file is a [`SeqError::Checkpoint`].
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join("model.safetensors");
        if !path.is_file() {
            return Err(problem(
                &path,
                "no such file; the weights of a pretrained checkpoint are read from \
                 model.safetensors (PyTorch .bin files are not supported)",
            ));
        }
        let mut store = SafetensorsStore::from_file(&path);
        let tensors = store
            .get_all_snapshots()
            .map_err(|e| {
                problem(
                    &path,
                    format!(
                        "not a readable safetensors file ({e}); the download may be truncated or \
                         corrupt, fetch it again"
                    ),
                )
            })?
            .iter()
            .map(|(name, s)| (name.clone(), (s.dtype, s.shape.to_vec())))
            .collect();
        Ok(Weights {
            path,
            store,
            tensors,
        })
    }

    /// Whether the file has a tensor called `key`.
    pub fn has(&self, key: &str) -> bool {
        self.tensors.contains_key(key)
    }

    /// Whether some tensor name starts with `prefix`.
    pub fn has_prefix(&self, prefix: &str) -> bool {
        self.tensors.keys().any(|k| k.starts_with(prefix))
    }

    /// Errors unless every tensor of `expected` is in the file (under its key or alias) as
    /// floats of its shape: [`SeqError::CheckpointTensor`] naming the key, the expected shape
    /// and what the file holds (`nothing` for a missing key).
    pub fn check(&self, expected: &[Expected]) -> Result<()> {
        for want in expected {
            let found = self.tensors.get(&want.key).or_else(|| {
                want.alias
                    .as_ref()
                    .and_then(|alias| self.tensors.get(alias))
            });
            let mismatch = |found: String| SeqError::CheckpointTensor {
                path: self.path.display().to_string(),
                key: want.key.clone(),
                expected: format!("{:?} (floats)", want.shape),
                found,
            };
            match found {
                None => return Err(mismatch("nothing".into())),
                Some((dtype, shape)) if !dtype.is_float() || *shape != want.shape => {
                    return Err(mismatch(format!("{shape:?} ({dtype:?})")));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// The tensor `key` (already [`check`](Self::check)ed) as floats of the backend, on
    /// `device`.
    pub fn read<B: Backend, const D: usize>(
        &mut self,
        key: &str,
        device: &B::Device,
    ) -> Result<Tensor<B, D>> {
        let path = self.path.clone();
        let unreadable = |e: String| {
            problem(
                &path,
                format!("cannot read tensor `{key}`: {e}; fetch the file again"),
            )
        };
        let data = self
            .store
            .get_snapshot(key)
            .map_err(|e| unreadable(e.to_string()))?
            .ok_or_else(|| unreadable("not in the file".into()))?
            .to_data()
            .map_err(|e| unreadable(format!("{e:?}")))?;
        if data.shape.len() != D {
            return Err(unreadable(format!(
                "rank {} instead of {D}",
                data.shape.len()
            )));
        }
        Ok(Tensor::from_data(data.convert::<B::FloatElem>(), device))
    }

    /// Loads the file into `module` through burn-store: the file's names rewritten by `remap`
    /// (regex → replacement, applied in order), PyTorch's layouts converted (linear weights
    /// transposed, LayerNorm `weight`/`bias` → `gamma`/`beta`), then `adapter`, floats cast to
    /// the backend's type; enum variants left out of the module's paths. Parameters listed in
    /// `set_by_hand` (module paths) are filled by the caller and may stay unmatched; any other
    /// parameter without a tensor, or a tensor that does not fit, is a
    /// [`SeqError::Checkpoint`] (after [`check`](Self::check), a bug of the key mapping).
    pub fn load_into<B: Backend, M: Module<B>>(
        &self,
        mut module: M,
        remap: &[(&str, &str)],
        adapter: impl ModuleAdapter + 'static,
        set_by_hand: &[String],
    ) -> Result<M> {
        let remapper = KeyRemapper::from_patterns(remap.to_vec())
            .map_err(|e| problem(&self.path, format!("internal key pattern is invalid: {e}")))?;
        let adapter = PyTorchToBurnAdapter
            .chain(adapter)
            .chain(CastFloats(<B::FloatElem as Element>::dtype()));
        let mut store = SafetensorsStore::from_file(&self.path)
            .remap(remapper)
            .with_from_adapter(adapter)
            .skip_enum_variants(true)
            .allow_partial(true)
            .validate(false);
        let result = module
            .load_from(&mut store)
            .map_err(|e| problem(&self.path, format!("cannot load the weights: {e}")))?;
        if !result.errors.is_empty() {
            let errors: Vec<String> = result.errors.iter().map(ToString::to_string).collect();
            return Err(problem(
                &self.path,
                format!("tensors do not fit the model: {}", errors.join("; ")),
            ));
        }
        let unmatched: Vec<&str> = result
            .missing
            .iter()
            .map(|(path, _)| path.as_str())
            .filter(|path| !set_by_hand.iter().any(|p| p == path))
            .collect();
        if !unmatched.is_empty() {
            return Err(problem(
                &self.path,
                format!(
                    "no tensor of the file maps to the parameters {unmatched:?}; the key mapping \
                     of the loader misses them (please report)"
                ),
            ));
        }
        Ok(module)
    }
}

/// Casts float tensors to the backend's float type (`F32` weights into an `f64` model, `BF16`
/// or `F16` weights into an `f32` one); other tensors pass unchanged.
#[derive(Debug, Clone, Copy)]
struct CastFloats(DType);

impl ModuleAdapter for CastFloats {
    fn adapt(&self, snapshot: &TensorSnapshot) -> TensorSnapshot {
        let target = self.0;
        if !snapshot.dtype.is_float() || snapshot.dtype == target {
            return snapshot.clone();
        }
        let data = snapshot.clone_data_fn();
        with_data(snapshot, target, snapshot.shape.clone(), move || {
            Ok(data()?.convert_dtype(target))
        })
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(*self)
    }
}

/// `snapshot` with new data (computed lazily by `data`), dtype and shape; its path and
/// container stack kept.
pub(super) fn with_data(
    snapshot: &TensorSnapshot,
    dtype: DType,
    shape: Shape,
    data: impl Fn() -> std::result::Result<TensorData, burn_store::TensorSnapshotError> + 'static,
) -> TensorSnapshot {
    TensorSnapshot::from_closure(
        Rc::new(data),
        dtype,
        shape,
        snapshot.path_stack.clone().unwrap_or_default(),
        snapshot.container_stack.clone().unwrap_or_default(),
        snapshot.tensor_id.unwrap_or_default(),
    )
}
