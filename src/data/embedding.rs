//! The fixed (untrained) token embedding of the recall tasks.

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

/// The `n` most similar pairs of rows of a row-major `[K, dim]` table, as `(i, j, cos)` with
/// `i < j`, most similar first. Near-parallel rows are tokens a model can barely tell apart
/// through a fixed embedding (at d = 8, sixteen random directions are far from orthogonal).
pub fn closest_pairs(table: &[f32], dim: usize, n: usize) -> Vec<(usize, usize, f32)> {
    let rows: Vec<&[f32]> = table.chunks_exact(dim).collect();
    let norm = |r: &[f32]| {
        r.iter()
            .map(|v| v * v)
            .sum::<f32>()
            .sqrt()
            .max(f32::MIN_POSITIVE)
    };
    let mut pairs = Vec::new();
    for i in 0..rows.len() {
        for j in i + 1..rows.len() {
            let dot: f32 = rows[i].iter().zip(rows[j]).map(|(a, b)| a * b).sum();
            pairs.push((i, j, dot / (norm(rows[i]) * norm(rows[j]))));
        }
    }
    pairs.sort_by(|a, b| b.2.total_cmp(&a.2));
    pairs.truncate(n);
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_pairs_ranks_by_cosine() {
        // Rows: e0, e1, (e0 + e1)/√2 at 45° from both, −e0.
        let s = std::f32::consts::FRAC_1_SQRT_2;
        let table = [1.0, 0.0, 0.0, 1.0, s, s, -1.0, 0.0];
        let pairs = closest_pairs(&table, 2, 3);
        assert_eq!((pairs[0].0, pairs[0].1), (0, 2));
        assert_eq!((pairs[1].0, pairs[1].1), (1, 2));
        assert!((pairs[0].2 - s).abs() < 1e-6 && (pairs[1].2 - s).abs() < 1e-6);
        assert!(pairs[2].2.abs() < 1e-6, "{pairs:?}"); // e0 ⟂ e1, e1 ⟂ −e0
    }

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
