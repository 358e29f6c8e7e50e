//! The crate's single error type.
//!
//! Every configuration that can be wrong is checked in `try_init`/`new` and reported with a
//! [`SeqError`] whose message says what to change. No layer panics on a bad config.

use thiserror::Error;

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, SeqError>;

/// Everything that can go wrong when configuring or calling a `seqlayers` layer.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum SeqError {
    /// A size that must be positive was zero.
    #[error("`{name}` must be greater than zero; set it to a positive value")]
    ZeroSize {
        /// Name of the offending field.
        name: &'static str,
    },

    /// `d_model` is not a multiple of the number of heads.
    #[error(
        "d_model ({d_model}) must be divisible by n_heads ({n_heads}); choose n_heads among the divisors of d_model"
    )]
    HeadsDoNotDivide {
        /// Model width.
        d_model: usize,
        /// Number of heads.
        n_heads: usize,
    },

    /// Rotary embeddings rotate pairs of features, so the head dimension must be even.
    #[error("RoPE needs an even head dimension, got d_head = {d_head}; change d_model or n_heads")]
    OddRopeDim {
        /// Per-head dimension.
        d_head: usize,
    },

    /// Hard-ALiBi asks for more windowed heads than the layer has.
    #[error(
        "Hard-ALiBi masks {windowed_heads} heads but the layer has only {n_heads}; use at most n_heads windowed heads"
    )]
    TooManyWindowedHeads {
        /// Heads asked to be windowed.
        windowed_heads: usize,
        /// Heads available.
        n_heads: usize,
    },

    /// A sequence is longer than a fixed-size table (e.g. learned positions).
    #[error(
        "sequence of length {len} exceeds the {what} capacity of {max}; raise the capacity or choose an out-of-range policy"
    )]
    SequenceTooLong {
        /// What has the limit.
        what: &'static str,
        /// Requested length.
        len: usize,
        /// Capacity.
        max: usize,
    },

    /// A scalar parameter is outside its valid range.
    #[error("`{name}` = {value} is out of range: expected {expected}")]
    OutOfRange {
        /// Parameter name.
        name: &'static str,
        /// Value given.
        value: f64,
        /// Description of the valid range.
        expected: &'static str,
    },

    /// Two tensors or configs disagree on a dimension.
    #[error("shape mismatch for {what}: expected {expected}, got {got}")]
    ShapeMismatch {
        /// What is being compared.
        what: &'static str,
        /// Expected value (rendered).
        expected: String,
        /// Actual value (rendered).
        got: String,
    },

    /// A configuration value is invalid for a reason described in the message.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),

    /// Training diverged (loss became NaN or infinite).
    #[error(
        "training diverged at step {step}: loss = {loss}; lower the learning rate or check inputs"
    )]
    Diverged {
        /// Step at which it happened.
        step: usize,
        /// The non-finite loss value.
        loss: f64,
    },

    /// An I/O error (writing results, plots).
    #[error("I/O error: {0}")]
    Io(String),

    /// A file could not be read.
    #[error("cannot read `{path}`: {message}; check the path")]
    Read {
        /// The path that failed.
        path: String,
        /// The operating system's reason.
        message: String,
    },

    /// A data file has a line the reader cannot use.
    #[error("{origin}, line {line}: {message}")]
    BadData {
        /// The file (or a description of the text) being read.
        origin: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong and how to fix it.
        message: String,
    },

    /// A saved model cannot be loaded (missing or corrupt file, or weights that do not fit the
    /// saved configuration).
    #[error("checkpoint `{path}`: {problem}")]
    Checkpoint {
        /// The checkpoint folder or file.
        path: String,
        /// What is wrong and what to do.
        problem: String,
    },

    /// A tensor of a pretrained checkpoint is missing or does not have the shape the model
    /// needs (Hugging Face or state-spaces weights loaded through burn-store).
    #[error(
        "checkpoint `{path}`: tensor `{key}`: expected {expected}, found {found}; check that \
         config.json describes these weights"
    )]
    CheckpointTensor {
        /// The checkpoint file.
        path: String,
        /// The tensor's name in the file (e.g. `encoder.layer.0.attention.self.query.weight`).
        key: String,
        /// The shape the model needs.
        expected: String,
        /// What the file holds (`nothing` when the key is missing).
        found: String,
    },

    /// A token id is outside the model's vocabulary.
    #[error(
        "{what} id {id} is outside the vocabulary 0..{vocab_size}; check the tokenizer or vocab_size"
    )]
    TokenOutOfRange {
        /// Which ids ("token", "source", "target", …).
        what: String,
        /// The offending id (the smallest negative one, else the largest).
        id: i64,
        /// Vocabulary size `V`: valid ids are `0..V`.
        vocab_size: usize,
    },

    /// A tensor holds a NaN or an infinity where finite values are required (reported by the
    /// opt-in [`ensure_finite`] check; the layers themselves propagate non-finite values).
    #[error(
        "{what} holds {value} at index {index:?}; remove or replace non-finite values (check the data or the layer before)"
    )]
    NonFinite {
        /// Which tensor.
        what: &'static str,
        /// The first non-finite value found, rendered (`NaN`, `inf`, `-inf`).
        value: String,
        /// Its index, one entry per axis.
        index: Vec<usize>,
    },

    /// A file or folder could not be written.
    #[error("cannot write `{path}`: {message}; choose a writable folder with --out")]
    Write {
        /// The path that failed.
        path: String,
        /// The operating system's reason.
        message: String,
    },

    /// A data-parallel run was asked for a peer count it cannot run (zero peers, or fewer
    /// devices than peers).
    #[error("data-parallel training with {peers} peer(s): {problem}")]
    PeerCount {
        /// The peer count asked for.
        peers: usize,
        /// What is wrong with it, and what to change.
        problem: String,
    },

    /// A peer of a data-parallel run failed; the run was stopped on every peer.
    #[error("peer {peer} of the data-parallel run failed: {source}")]
    PeerFailed {
        /// The failing peer (0-based).
        peer: usize,
        /// Its error.
        #[source]
        source: Box<SeqError>,
    },

    /// A peer of a data-parallel run did not join, or reported nothing, within the run's
    /// timeout; the run was stopped on every peer instead of waiting for it.
    #[error(
        "peer {peer} of the data-parallel run {what} within {seconds} s; raise the timeout if \
         one step or evaluation takes longer"
    )]
    PeerTimeout {
        /// The peer waited for (0-based).
        peer: usize,
        /// What happened: `never joined`, `made no progress`, and on a multi-node run `was
        /// not joined by the other nodes` or `got no answer from the other nodes`.
        what: &'static str,
        /// The timeout, in seconds.
        seconds: f64,
    },

    /// A peer's thread panicked during a data-parallel run.
    #[error("peer {peer} of the data-parallel run panicked: {message}")]
    PeerPanicked {
        /// The peer (0-based).
        peer: usize,
        /// The panic's message.
        message: String,
    },

    /// burn-collective refused or failed a collective operation (register, all-reduce, finish).
    #[error("collective operation `{operation}` failed on peer {peer}: {message}")]
    Collective {
        /// Which operation.
        operation: &'static str,
        /// The peer that called it (0-based).
        peer: usize,
        /// burn-collective's error, rendered.
        message: String,
    },
}

impl SeqError {
    /// A [`SeqError::Read`] for `path`.
    pub fn read(path: &std::path::Path, e: std::io::Error) -> Self {
        SeqError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }

    /// A [`SeqError::Write`] for `path`.
    pub fn write(path: &std::path::Path, e: std::io::Error) -> Self {
        SeqError::Write {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }
}

impl From<std::io::Error> for SeqError {
    fn from(e: std::io::Error) -> Self {
        SeqError::Io(e.to_string())
    }
}

/// Returns [`SeqError::ZeroSize`] when `value == 0`.
pub fn ensure_nonzero(name: &'static str, value: usize) -> Result<()> {
    if value == 0 {
        Err(SeqError::ZeroSize { name })
    } else {
        Ok(())
    }
}

/// [`SeqError::OutOfRange`] naming `name` unless `value` is finite and `> 0`: the one check of
/// the crate's positive real settings (rates, epsilons, scales).
pub(crate) fn ensure_positive(name: &'static str, value: f64) -> Result<()> {
    if value.is_finite() && value > 0.0 {
        return Ok(());
    }
    Err(SeqError::OutOfRange {
        name,
        value,
        expected: "a finite value > 0",
    })
}

/// [`SeqError::OutOfRange`] naming `name` unless `value` is finite and `≥ 0`.
pub(crate) fn ensure_non_negative(name: &'static str, value: f64) -> Result<()> {
    if value.is_finite() && value >= 0.0 {
        return Ok(());
    }
    Err(SeqError::OutOfRange {
        name,
        value,
        expected: "a finite value ≥ 0",
    })
}

/// `Err(ShapeMismatch)` naming `what` unless the shape `got` equals `expected`: the one shape
/// check of the crate's `try_` entry points.
pub(crate) fn ensure_shape(what: &'static str, expected: &[usize], got: &[usize]) -> Result<()> {
    if expected == got {
        return Ok(());
    }
    Err(SeqError::ShapeMismatch {
        what,
        expected: format!("{expected:?}"),
        got: format!("{got:?}"),
    })
}

/// Errors with [`SeqError::NonFinite`] on the first NaN or ±∞ in `x` (row-major order).
///
/// Opt-in: it reads the whole tensor back to the host, so no forward pass calls it. The layers
/// propagate non-finite inputs instead (see each forward's documentation); call this on inputs
/// that come from outside when a typed error is preferred to non-finite outputs.
///
/// ```
/// use seqlayers::backend::{Cpu, CpuDevice};
/// use seqlayers::burn::tensor::Tensor;
/// use seqlayers::ensure_finite;
///
/// let x = Tensor::<Cpu, 2>::from_floats([[1.0, f32::NAN]], &CpuDevice::default());
/// let e = ensure_finite(&x, "input").unwrap_err();
/// assert!(e.to_string().contains("NaN at index [0, 1]"), "{e}");
/// ```
pub fn ensure_finite<B: burn::tensor::backend::Backend, const D: usize>(
    x: &burn::tensor::Tensor<B, D>,
    what: &'static str,
) -> Result<()> {
    let dims = x.dims();
    let data = x.to_data().convert::<f64>();
    let values = data.as_slice::<f64>().map_err(|e| SeqError::NonFinite {
        what,
        value: format!("unreadable data ({e:?})"),
        index: Vec::new(),
    })?;
    let Some(flat) = values.iter().position(|v| !v.is_finite()) else {
        return Ok(());
    };
    let mut index = vec![0; D];
    let mut rest = flat;
    for axis in (0..D).rev() {
        index[axis] = rest % dims[axis];
        rest /= dims[axis];
    }
    Err(SeqError::NonFinite {
        what,
        value: format!("{}", values[flat] as f32),
        index,
    })
}
