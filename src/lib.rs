//! # seqlayers
//!
//! Sequence-model layers on [Burn](https://burn.dev) behind its generic `<B: Backend>` API:
//! attention and the Mamba selective SSM side by side, with the blocks, models, tasks,
//! training loop and decoding to compare them. `docs/ARCHITECTURE.md` shows how data flows
//! from a task through a model to the loss and back out through decoding.
//!
//! ## Layers
//! - [`attention`]: [`MultiHeadAttention`](attention::MultiHeadAttention), built by
//!   [`AttentionConfig`](attention::AttentionConfig) and called with an
//!   [`AttentionInput`](attention::AttentionInput) (self- or cross-attention, padding, a
//!   cached memory); causal masking, Q/K/V sharing and similarity ablations; a
//!   [`KvCache`](attention::KvCache) for decoding.
//! - [`position`]: six positional encodings in one
//!   [`PositionEncoding`](position::PositionEncoding) (none, learned, sinusoidal, RoPE, ALiBi,
//!   Hard-ALiBi).
//! - [`ssm`]: the Mamba mixer [`Mamba`](ssm::Mamba) ([`MambaConfig`](ssm::MambaConfig)), its
//!   four scans ([`ScanKind`](ssm::ScanKind)) and discretizations, and recurrent inference
//!   with a [`MambaState`](ssm::MambaState).
//! - [`lstm`]: Burn's LSTM run by a fused kernel ([`lstm_forward`](lstm::lstm_forward)).
//! - [`nn`]: the norms ([`Norm`](nn::Norm)) and the MLP sublayer ([`Mlp`](nn::Mlp)).
//!
//! ## Blocks
//! One residual block, [`Residual`](nn::Residual), pre- or post-norm, around any
//! [`Mixer`](nn::Mixer): [`AttentionBlock`](attention::AttentionBlock),
//! [`MambaBlock`](ssm::MambaBlock), [`LstmBlock`](lstm::LstmBlock) and
//! [`MlpBlock`](nn::MlpBlock) are that type. A [`SequenceStack`](stack::SequenceStack)
//! chains them from a spec such as `"mamba,attention+mlp"`.
//!
//! ## Models
//! [`model`]: the causal [`LanguageModel`](model::LanguageModel), the recall classifier
//! [`StackClassifier`](model::StackClassifier), the translation
//! [`EncoderDecoder`](model::EncoderDecoder), the BERT-family
//! [`BertEncoder`](model::BertEncoder) and its classifier, checkpoints, and pretrained Hugging
//! Face / state-spaces weights ([`load_bert`](model::load_bert),
//! [`load_mamba`](model::load_mamba)); [`presets`] names the models of the papers the crate
//! reproduces.
//!
//! ## Tasks
//! [`data`]: associative recall, copying and n-gram lookup, Pig-Latin and character language
//! modelling, each a [`Task`](data::Task) that yields batches and scores predictions; movie-review
//! sentiment tokenized by a `tokenizer.json` [`Tokenizer`](data::Tokenizer).
//!
//! ## Training
//! [`train`]: one loop ([`train()`](train::train)) for every task and model, configured by a
//! [`TrainConfig`](train::TrainConfig).
//!
//! ## Decoding
//! [`decode`]: greedy and sampled generation with state for every model that implements
//! [`Decoder`](decode::Decoder).
//!
//! ## One state convention
//! Every stateful layer, block and model decodes the same way: `init_state(batch, device)`,
//! then `forward_with_state(x, state) -> Result<(y, state)>` (or `step` for one position),
//! the state passed by value. Feeding a sequence in chunks gives the output of one `forward`.
//!
//! ```
//! use seqlayers::backend::{Cpu, CpuDevice};
//! use seqlayers::burn::tensor::{Distribution, Tensor};
//! use seqlayers::ssm::MambaConfig;
//!
//! let device = CpuDevice::default();
//! let block = MambaConfig::new(16).init_block::<Cpu>(&device);
//! let x = Tensor::<Cpu, 3>::random([2, 8, 16], Distribution::Default, &device); // [B, L, D]
//! let (head, state) = block.forward_with_state(x.clone().narrow(1, 0, 5), block.init_state(2, &device))?;
//! let (tail, _) = block.forward_with_state(x.clone().narrow(1, 5, 3), state)?;
//! let whole = block.forward(x);
//! let chunked = Tensor::cat(vec![head, tail], 1);
//! assert!(whole.sub(chunked).abs().max().into_scalar() < 1e-4);
//! # Ok::<(), seqlayers::SeqError>(())
//! ```
//!
//! ## Backends, kernels and errors
//! [`backend`] names the CPU (default), wgpu and CUDA backends. The CPU backend runs fused
//! kernels (scan, attention, LSTM, projections) at the best [`simd`] level, the wgpu and CUDA
//! backends CubeCL kernels for the scan and attention; [`kernels()`] says which
//! path each op takes on a backend. Fallible calls return [`Result`] with a [`SeqError`] that
//! says what to fix; `try_` entry points never panic on bad input.

#![warn(missing_docs)]
// A public type must be nameable by users wherever it appears in the public API.
#![warn(unnameable_types)]

// Layers, blocks, models, tasks, training, decoding; then the backends and the internals.
pub mod attention;
pub mod lstm;
pub mod nn;
pub mod position;
pub mod ssm;
pub mod stack;

pub mod model;
pub mod presets;

pub mod data;

pub mod train;

pub mod decode;

pub mod backend;
mod dispatch;
mod error;
mod init;
#[cfg(feature = "internals")]
pub mod internals;
mod linear;
mod ndarray_io;
mod reshape;
pub mod simd;

pub use burn;
pub use dispatch::{FusedOp, KernelPath, kernel_path, kernels};
pub use error::{Result, SeqError, ensure_finite, ensure_nonzero};

/// The README's code blocks, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
