//! Pretrained checkpoints: Hugging Face and state-spaces folders (`config.json` +
//! `model.safetensors`) loaded into the crate's models through burn-store's
//! `SafetensorsStore`, with key remapping and adapters.
//!
//! | loader | checkpoints | model |
//! |---|---|---|
//! | [`load_bert`] | `BertModel`, `RobertaModel` (and the `bert.`/`roberta.`-prefixed task models), e.g. all-MiniLM-L6-v2 | [`BertEncoder`](super::BertEncoder) |
//! | [`load_mamba`] | `MambaForCausalLM` (Hugging Face), `mamba_ssm` Mamba1 (state-spaces) | [`LanguageModel`](super::LanguageModel) over Mamba blocks |
//!
//! # How a checkpoint is loaded
//! 1. `config.json` → the crate's configuration ([`read_bert_config`], [`read_mamba_config`]);
//!    another architecture or an option the crate does not have is an error here.
//! 2. `model.safetensors` is opened with burn-store (its header only) and every tensor the
//!    configuration needs is checked by name, type and shape **in the file's layout**, so an
//!    error names the checkpoint key: [`SeqError::CheckpointTensor`](crate::SeqError::CheckpointTensor)
//!    `{ key, expected, found }` (`found: nothing` for a missing key).
//! 3. The model is built from the configuration and `load_from` applies the file: regex key
//!    remapping to the crate's module paths (enum variants skipped), burn-store's
//!    `PyTorchToBurnAdapter` (linear weights `[out, in]` → `[in, out]`, LayerNorm
//!    `weight`/`bias` → `gamma`/`beta`), a small adapter for Mamba's convolution
//!    (`[E, 1, K]` → `[E, K]`), and floats cast to the backend's type.
//! 4. BERT's `query`, `key`, `value` are read one by one and fused into the attention's single
//!    `[D, 3D]` projection (`[W_Qᵀ | W_Kᵀ | W_Vᵀ]`, biases concatenated).
//!
//! Nothing panics on a bad folder: a missing file, a truncated or corrupt safetensors file, JSON
//! of another model, a missing tensor or one of another shape are typed errors (tested in
//! `tests/suite/pretrained.rs` with the tiny fixtures of `tests/fixtures/pretrained/`).

mod bert;
mod mamba;
mod weights;

pub use bert::{load_bert, read_bert_config};
pub use mamba::{load_mamba, read_mamba_config};
