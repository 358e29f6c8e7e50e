//! The fixed sinusoidal table of Vaswani et al. (2017).
//!
//! `PE[p, 2i] = sin(p·θ_i)`, `PE[p, 2i+1] = cos(p·θ_i)`, `θ_i = base^(−2i/D)`. With an odd `D`
//! the last feature is a sine. Defined for every position, so it never runs out of range.

/// Rows `offset .. offset + len` of the sinusoidal table for width `d_model`, row-major
/// `[len, d_model]`, computed in f64 and rounded to f32.
pub fn sinusoidal_table(offset: usize, len: usize, d_model: usize, base: f64) -> Vec<f32> {
    let mut table = Vec::with_capacity(len * d_model);
    for p in offset..offset + len {
        for f in 0..d_model {
            let pair = (f / 2) as f64;
            let theta = base.powf(-2.0 * pair / d_model as f64);
            let angle = p as f64 * theta;
            let value = if f % 2 == 0 { angle.sin() } else { angle.cos() };
            table.push(value as f32);
        }
    }
    table
}
