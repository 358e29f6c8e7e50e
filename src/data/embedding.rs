//! The fixed token embedding of the recall homework.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal};

/// A `K × d` matrix with iid N(0, 1) entries whose rows are normalized to unit length,
/// row-major (`row k` is the embedding of token `k`). Deterministic in `seed`.
///
/// The seeds ask for `numpy.random.seed(0)`; numpy's generator cannot be reproduced here, so
/// the same construction is drawn from Rust's seeded [`StdRng`] instead.
pub fn random_unit_embedding(vocab: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut table = Vec::with_capacity(vocab * dim);
    for _ in 0..vocab {
        let row: Vec<f64> = (0..dim).map(|_| StandardNormal.sample(&mut rng)).collect();
        let norm = row
            .iter()
            .map(|v| v * v)
            .sum::<f64>()
            .sqrt()
            .max(f64::MIN_POSITIVE);
        table.extend(row.iter().map(|v| (v / norm) as f32));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_have_unit_norm_and_are_seeded() {
        let t = random_unit_embedding(16, 8, 0);
        assert_eq!(t.len(), 128);
        for row in t.chunks(8) {
            let n: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((n - 1.0).abs() < 1e-5, "row norm {n}");
        }
        assert_eq!(t, random_unit_embedding(16, 8, 0));
        assert_ne!(t, random_unit_embedding(16, 8, 1));
    }
}
