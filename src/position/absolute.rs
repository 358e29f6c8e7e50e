//! Absolute position encodings added to the embeddings at the model input.
//!
//! `y_p = x_p + PE[offset + p]` for `p = 0..L`, where `PE` is a learned table
//! (`[max_len, D]`, initialised `N(0, 0.02²)` as in GPT-2) or the fixed sinusoids of
//! [`sinusoidal_table`]. For every relative kind and NoPE the module is the identity, so a
//! model can call it unconditionally. `offset` is the absolute position of the first row,
//! which incremental decoding needs.

use burn::module::{Initializer, Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use super::{OutOfRange, PositionEncoding, sinusoidal_table};
use crate::error::{Result, SeqError, ensure_nonzero};

/// Standard deviation of the learned table's initialisation (GPT-2).
const LEARNED_INIT_STD: f64 = 0.02;

/// Which absolute encoding an [`AbsolutePosition`] applies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AbsoluteKind {
    /// Identity (NoPE and the relative encodings).
    Identity,
    /// Learned table with the given out-of-range policy.
    Learned(OutOfRange),
    /// Fixed sinusoids with the given base.
    Sinusoidal(f64),
}

/// Adds an absolute position encoding to `[B, L, D]` embeddings.
///
/// Build it with [`PositionEncoding::init_absolute`].
#[derive(Module, Debug)]
pub struct AbsolutePosition<B: Backend> {
    /// The learned table `[max_len, D]` (only for [`PositionEncoding::Learned`]).
    pub table: Option<Param<Tensor<B, 2>>>,
    /// The kind of encoding.
    pub kind: AbsoluteKind,
    /// Model width `D`.
    pub d_model: usize,
}

impl<B: Backend> AbsolutePosition<B> {
    /// Builds the encoding selected by `encoding` for width `d_model`; validates both.
    pub fn try_new(
        encoding: &PositionEncoding,
        d_model: usize,
        device: &B::Device,
    ) -> Result<Self> {
        ensure_nonzero("d_model", d_model)?;
        encoding.validate()?;
        let (table, kind) = match *encoding {
            PositionEncoding::Learned {
                max_len,
                out_of_range,
            } => {
                let init = Initializer::Normal {
                    mean: 0.0,
                    std: LEARNED_INIT_STD,
                };
                let table = init.init_with([max_len, d_model], None, None, device);
                // Materialise now so that clones of the module share the table (Burn's lazy
                // parameters would otherwise re-draw it per clone).
                let _ = table.val();
                (Some(table), AbsoluteKind::Learned(out_of_range))
            }
            PositionEncoding::Sinusoidal { base } => (None, AbsoluteKind::Sinusoidal(base)),
            _ => (None, AbsoluteKind::Identity),
        };
        Ok(Self {
            table,
            kind,
            d_model,
        })
    }

    /// Number of learned positions, `None` when the encoding has no table.
    pub fn max_len(&self) -> Option<usize> {
        self.table.as_ref().map(|t| t.dims()[0])
    }

    /// The encodings `PE[offset .. offset + len]` as `[len, D]` on `device`, or `None` for the
    /// identity.
    ///
    /// Errors with [`SeqError::SequenceTooLong`] when a learned table with
    /// [`OutOfRange::Error`] is asked for positions `≥ max_len`.
    pub fn encodings(
        &self,
        offset: usize,
        len: usize,
        device: &B::Device,
    ) -> Result<Option<Tensor<B, 2>>> {
        match (self.kind, &self.table) {
            (AbsoluteKind::Identity, _) => Ok(None),
            (AbsoluteKind::Sinusoidal(base), _) => {
                let data = sinusoidal_table(offset, len, self.d_model, base);
                let pe = Tensor::from_data(TensorData::new(data, [len, self.d_model]), device); // [L, D]
                Ok(Some(pe))
            }
            (AbsoluteKind::Learned(policy), Some(table)) => {
                let max_len = table.dims()[0];
                let end = offset + len;
                if end <= max_len {
                    return Ok(Some(table.val().narrow(0, offset, len))); // [L, D]
                }
                match policy {
                    OutOfRange::Error => Err(SeqError::SequenceTooLong {
                        what: "learned position table",
                        len: end,
                        max: max_len,
                    }),
                    OutOfRange::Clamp => {
                        let idx: Vec<i64> =
                            (offset..end).map(|p| p.min(max_len - 1) as i64).collect();
                        let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [len]), device); // [L]
                        Ok(Some(table.val().select(0, idx))) // [L, D]
                    }
                }
            }
            (AbsoluteKind::Learned(_), None) => Err(SeqError::InvalidConfig(
                "learned position encoding has no table; build it with PositionEncoding::init_absolute".into(),
            )),
        }
    }

    /// `x + PE[offset .. offset + L]` for `x` `[B, L, D]`; the identity for non-absolute kinds.
    ///
    /// Errors when `x`'s width is not `D` or when a learned table with
    /// [`OutOfRange::Error`] is too short.
    pub fn try_forward(&self, x: Tensor<B, 3>, offset: usize) -> Result<Tensor<B, 3>> {
        let [_, len, d] = x.dims();
        if d != self.d_model {
            return Err(SeqError::ShapeMismatch {
                what: "embedding width of the position encoding input",
                expected: self.d_model.to_string(),
                got: d.to_string(),
            });
        }
        Ok(match self.encodings(offset, len, &x.device())? {
            Some(pe) => x + pe.unsqueeze::<3>(), // [B, L, D]
            None => x,
        })
    }
}
