//! Positional encodings: how a layer learns *where* a token is.
//!
//! One enum, [`PositionEncoding`], selects the scheme for a whole model. Absolute schemes
//! (learned, sinusoidal) are added to the embeddings once at the model input through
//! [`AbsolutePosition`]; relative schemes (RoPE, ALiBi, Hard-ALiBi) act inside every attention
//! layer on the queries/keys or on the attention scores; `None` (NoPE) relies on the causal
//! mask alone.
//!
//! # Glossary
//! | symbol | meaning |
//! |---|---|
//! | `L` | sequence length; `t`, `i` query position, `j` key position |
//! | `D` | model width `d_model`; `d_head = D / H` |
//! | `H` | number of attention heads, heads indexed `h = 1..H` (ALiBi) or `0..H` (code) |
//! | `PE[p]` | absolute encoding vector of position `p`, added to the embedding `x_p` |
//! | `θ_i = base^(−2i/d)` | sinusoidal / rotary frequency of feature pair `i` |
//! | `m_h = 2^(−8h/H)` | ALiBi slope of head `h`; score bias `−m_h·|i − j|` |
//! | `W` | Hard-ALiBi windowed heads: head `h < W` sees only the last `h + 1` tokens |
//! | offset | absolute position of the first token of a chunk (incremental decoding) |

mod absolute;
mod alibi;
pub(crate) mod rope;
mod sinusoidal;

pub use absolute::{AbsoluteKind, AbsolutePosition};
pub use alibi::{alibi_bias, alibi_slopes, hard_alibi_bias};
pub use rope::Rope;
pub(crate) use rope::rope_tables;
pub use sinusoidal::sinusoidal_table;

use burn::config::Config;
use burn::tensor::backend::Backend;

use crate::error::{SeqError, ensure_nonzero};

/// Default base of the sinusoidal and rotary frequencies (`θ_i = base^(−2i/d)`).
pub const DEFAULT_BASE: f64 = 10_000.0;

/// What a learned absolute encoding does at positions past its table.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum OutOfRange {
    /// Return [`SeqError::SequenceTooLong`].
    Error,
    /// Reuse the last learned vector (`PE[min(p, max_len − 1)]`) for every later position.
    Clamp,
}

/// The positional encoding of a model; one value configures both the input embedding and all
/// attention layers.
#[derive(Config, Debug, PartialEq)]
pub enum PositionEncoding {
    /// NoPE: no positional information besides the causal mask.
    None,
    /// A learned table `PE ∈ R^{max_len×D}` added to the embeddings.
    Learned {
        /// Number of learned positions.
        max_len: usize,
        /// Behaviour at positions `≥ max_len`.
        out_of_range: OutOfRange,
    },
    /// Fixed sinusoids `PE[p, 2i] = sin(p·θ_i)`, `PE[p, 2i+1] = cos(p·θ_i)` added to the
    /// embeddings (Vaswani et al., 2017). Defined for every position.
    Sinusoidal {
        /// Frequency base (10000 in the paper).
        base: f64,
    },
    /// Rotary position embedding (Su et al., RoFormer): queries and keys of every head are
    /// rotated by the angle `p·θ_i`, so `q_i·k_j` depends only on `i − j`.
    Rope {
        /// Frequency base (10000 in the paper).
        base: f64,
    },
    /// ALiBi (Press et al.): score bias `−m_h·|i − j|` with slopes `m_h = 2^(−8h/H)`.
    Alibi,
    /// Hard-ALiBi (Jelassi et al., "Repeat After Me"): head `h < windowed_heads` attends only
    /// to the last `h + 1` tokens (bias `−∞` further back); the remaining heads are NoPE.
    HardAlibi {
        /// Number of windowed heads `W` (`1 ≤ W ≤ H`).
        windowed_heads: usize,
    },
}

impl PositionEncoding {
    /// Learned absolute positions that return an error past `max_len`.
    pub fn learned(max_len: usize) -> Self {
        Self::Learned {
            max_len,
            out_of_range: OutOfRange::Error,
        }
    }

    /// Learned absolute positions that reuse the last vector past `max_len`.
    pub fn learned_clamped(max_len: usize) -> Self {
        Self::Learned {
            max_len,
            out_of_range: OutOfRange::Clamp,
        }
    }

    /// Sinusoidal absolute positions with base 10000.
    pub fn sinusoidal() -> Self {
        Self::Sinusoidal { base: DEFAULT_BASE }
    }

    /// Rotary positions with base 10000.
    pub fn rope() -> Self {
        Self::Rope { base: DEFAULT_BASE }
    }

    /// ALiBi.
    pub fn alibi() -> Self {
        Self::Alibi
    }

    /// Hard-ALiBi with `windowed_heads` windowed heads.
    pub fn hard_alibi(windowed_heads: usize) -> Self {
        Self::HardAlibi { windowed_heads }
    }

    /// `true` for the schemes added to the embeddings at the model input (learned, sinusoidal).
    pub fn is_absolute(&self) -> bool {
        matches!(self, Self::Learned { .. } | Self::Sinusoidal { .. })
    }

    /// `true` for the schemes that act inside attention (RoPE, ALiBi, Hard-ALiBi).
    pub fn is_relative(&self) -> bool {
        matches!(
            self,
            Self::Rope { .. } | Self::Alibi | Self::HardAlibi { .. }
        )
    }

    /// Short human-readable name (for tables and file names).
    pub fn name(&self) -> &'static str {
        match self {
            Self::None => "nope",
            Self::Learned { .. } => "learned",
            Self::Sinusoidal { .. } => "sinusoidal",
            Self::Rope { .. } => "rope",
            Self::Alibi => "alibi",
            Self::HardAlibi { .. } => "hard-alibi",
        }
    }

    /// Checks the encoding's own fields (table size, frequency base).
    pub fn validate(&self) -> crate::Result<()> {
        match *self {
            Self::Learned { max_len, .. } => ensure_nonzero("max_len", max_len),
            Self::Sinusoidal { base } | Self::Rope { base } => check_base(base),
            Self::HardAlibi { windowed_heads } => ensure_nonzero("windowed_heads", windowed_heads),
            Self::None | Self::Alibi => Ok(()),
        }
    }

    /// Checks that the encoding fits an attention layer with `n_heads` heads of width `d_head`
    /// (even `d_head` for RoPE, at most `n_heads` windowed heads for Hard-ALiBi).
    pub fn validate_for_heads(&self, n_heads: usize, d_head: usize) -> crate::Result<()> {
        self.validate()?;
        match *self {
            Self::Rope { .. } if !d_head.is_multiple_of(2) => Err(SeqError::OddRopeDim { d_head }),
            Self::HardAlibi { windowed_heads } if windowed_heads > n_heads => {
                Err(SeqError::TooManyWindowedHeads {
                    windowed_heads,
                    n_heads,
                })
            }
            _ => Ok(()),
        }
    }

    /// Builds the input-side encoding for width `d_model`: a learned table or fixed sinusoids
    /// for the absolute kinds, the identity for all others.
    pub fn init_absolute<B: Backend>(
        &self,
        d_model: usize,
        device: &B::Device,
    ) -> crate::Result<AbsolutePosition<B>> {
        AbsolutePosition::try_new(self, d_model, device)
    }
}

/// A frequency base must be finite and greater than one so that `θ_i` decreases with `i`.
fn check_base(base: f64) -> crate::Result<()> {
    if base.is_finite() && base > 1.0 {
        Ok(())
    } else {
        Err(SeqError::OutOfRange {
            name: "base",
            value: base,
            expected: "a finite number greater than 1 (10000 is standard)",
        })
    }
}
