//! Attention probes of seed 004 §1 (CSE 517 A2 §1.2–1.4): hand-built queries that make
//! dot-product attention select, copy every value (identity), average, and react to edited keys.
//!
//! Computed with the crate's attention primitive
//! [`seqlayers::attention::scaled_dot_product_attention`] on the CPU backend, *without* the
//! `1/√d` scale (scale = 1), exactly as in the exercise: `O = softmax(Q·Kᵀ)·V`.
//!
//! Prints the table and writes `probes.csv` and `report.md` (the table, why each query works,
//! and the answers to the written questions §1.2.3, §1.3.3 and §1.4.3, argued from the computed
//! numbers) to `--out`. Exits with status 1 if a probe misses the exercise's 0.05 tolerance or
//! a file cannot be written.
//!
//! Run: `cargo run --release --example attention_probe -- [--out DIR]`

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use burn::tensor::{Tensor, TensorData};
use clap::Parser;
use seqlayers::attention::{ScoreMask, scaled_dot_product_attention};
use seqlayers::backend::{Cpu, CpuDevice};

/// Keys `k_0..k_3` of the exercise (`d = 3`, `n = 4`).
const K: [[f64; 3]; 4] = [
    [0.47, 0.65, 0.60],
    [0.64, 0.50, -0.59],
    [-0.03, -0.48, -0.88],
    [0.43, -0.83, 0.35],
];
/// Values `v_0..v_3` of the exercise.
const V: [[f64; 3]; 4] = [
    [-0.07, -0.88, 0.47],
    [0.37, -0.93, -0.07],
    [-0.25, -0.75, 0.61],
    [0.94, 0.20, 0.28],
];
/// The "large number" S that sharpens the softmax.
const S: f64 = 20.0;
/// Largest acceptable error (the exercise's full-credit threshold).
const TOLERANCE: f64 = 0.05;

type Vec3 = [f64; 3];

fn dot(a: Vec3, b: Vec3) -> f64 {
    a.iter().zip(&b).map(|(x, y)| x * y).sum()
}
fn add(a: Vec3, b: Vec3) -> Vec3 {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}
fn sub(a: Vec3, b: Vec3) -> Vec3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}
fn scale(s: f64, a: Vec3) -> Vec3 {
    [s * a[0], s * a[1], s * a[2]]
}
fn norm(a: Vec3) -> f64 {
    dot(a, a).sqrt()
}

/// What can go wrong: reading the primitive's output back, or writing the report.
#[derive(Debug, thiserror::Error)]
enum ProbeError {
    #[error("reading the attention {what} back as f32: {detail}")]
    Data { what: &'static str, detail: String },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Outputs and attention weights of one probe, one entry per query row.
struct Attended {
    outputs: Vec<Vec3>,
    weights: Vec<[f64; 4]>,
}

/// `softmax(Q·Kᵀ)·V` through the crate's primitive: one batch, one head, `Q.len()` queries
/// (`[1, 1, rows, 3]`).
fn attend(queries: &[Vec3], keys: &[Vec3; 4], device: &CpuDevice) -> Result<Attended, ProbeError> {
    let to_tensor = |m: &[Vec3]| {
        let data: Vec<f32> = m.iter().flatten().map(|&v| v as f32).collect();
        Tensor::<Cpu, 4>::from_data(TensorData::new(data, [1, 1, m.len(), 3]), device)
    };
    let out = scaled_dot_product_attention(
        to_tensor(queries),
        to_tensor(keys),
        to_tensor(&V),
        1.0,
        &ScoreMask::none(),
    );
    let read = |t: Tensor<Cpu, 4>, what: &'static str| {
        t.into_data().to_vec::<f32>().map_err(|e| ProbeError::Data {
            what,
            detail: format!("{e:?}"),
        })
    };
    let o = read(out.context, "output")?; // [1, 1, rows, 3]
    let w = read(out.weights, "weights")?; // [1, 1, rows, 4]
    Ok(Attended {
        outputs: o
            .chunks(3)
            .map(|r| [r[0] as f64, r[1] as f64, r[2] as f64])
            .collect(),
        weights: w
            .chunks(4)
            .map(|r| [r[0] as f64, r[1] as f64, r[2] as f64, r[3] as f64])
            .collect(),
    })
}

/// Hand-built queries that make dot-product attention select, copy, average and react to
/// edited keys (seed 004 §1).
#[derive(Parser, Debug)]
#[command(
    about = "Hand-built queries that make dot-product attention select, copy, average and react to edited keys (seed 004 §1)"
)]
struct Args {
    /// Folder for probes.csv and report.md (created if missing).
    #[arg(long, default_value = "results/attention_probe")]
    out: PathBuf,
}

struct Probe {
    name: &'static str,
    /// How the query (or query matrix) is built.
    query: String,
    /// Which keys it attends over.
    keys_used: String,
    queries: Vec<Vec3>,
    keys: [Vec3; 4],
    targets: Vec<Vec3>,
    why: String,
}

/// One line of the table: one query row of one probe (1.2.2 has four).
struct Row<'a> {
    label: String,
    probe: &'a Probe,
    index: usize,
    query: Vec3,
    output: Vec3,
    target: Vec3,
    weights: [f64; 4],
    error: f64,
    probe_error: f64,
}

/// One probe's computed result.
struct Measured {
    attended: Attended,
    /// L2 error per query row.
    row_errors: Vec<f64>,
    /// ‖O − target‖ over all rows (Frobenius; the row error for a single query).
    error: f64,
}

fn measure(p: &Probe, device: &CpuDevice) -> Result<Measured, ProbeError> {
    let attended = attend(&p.queries, &p.keys, device)?;
    let row_errors: Vec<f64> = attended
        .outputs
        .iter()
        .zip(&p.targets)
        .map(|(o, t)| norm(sub(*o, *t)))
        .collect();
    let error = row_errors.iter().map(|e| e * e).sum::<f64>().sqrt();
    Ok(Measured {
        attended,
        row_errors,
        error,
    })
}

fn v3(v: Vec3) -> String {
    format!("[{:.3}, {:.3}, {:.3}]", v[0], v[1], v[2])
}
fn w4(w: [f64; 4]) -> String {
    format!("[{:.3}, {:.3}, {:.3}, {:.3}]", w[0], w[1], w[2], w[3])
}
fn s4(s: [f64; 4]) -> String {
    format!("[{:.2}, {:.2}, {:.2}, {:.2}]", s[0], s[1], s[2], s[3])
}
/// A vector in full precision for the CSV (space-separated, no commas).
fn csv_vec(v: &[f64]) -> String {
    let parts: Vec<String> = v.iter().map(|x| format!("{x:.6}")).collect();
    format!("[{}]", parts.join(" "))
}
/// Quotes a CSV field when it holds a comma, quote or newline.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn write_file(path: &Path, text: &str) -> Result<(), ProbeError> {
    std::fs::write(path, text).map_err(|source| ProbeError::Io {
        action: "writing",
        path: path.to_path_buf(),
        source,
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("attention_probe: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the probes, prints and writes the report; `Ok(false)` when a probe misses the tolerance.
fn run(args: &Args) -> Result<bool, ProbeError> {
    let device = CpuDevice::default();
    let mean = |rows: &[Vec3]| {
        scale(
            1.0 / rows.len() as f64,
            rows.iter().fold([0.0; 3], |a, r| add(a, *r)),
        )
    };
    let scores = |q: Vec3, keys: &[Vec3; 4]| keys.map(|k| dot(q, k));

    // §1.2.2: Q = S·K. Row i scores k_i·k_j; it picks v_i only if k_i·k_i beats every
    // k_i·k_j (j ≠ i). The margin m_i = k_i·k_i − max_{j≠i} k_i·k_j is checked here: the
    // keys are almost unit length, so by Cauchy–Schwarz the self-score wins, and the logit gap
    // is S·m_i.
    let margins: [(f64, usize); 4] = std::array::from_fn(|i| {
        (0..4)
            .filter(|&j| j != i)
            .map(|j| (dot(K[i], K[i]) - dot(K[i], K[j]), j))
            .fold((f64::INFINITY, 0), |a, b| if b.0 < a.0 { b } else { a })
    });
    let (min_row, &(min_margin, min_rival)) = margins
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.0.total_cmp(&b.1.0))
        .expect("four rows");
    let norms = K.map(norm);
    let q_identity: Vec<Vec3> = K.iter().map(|&k| scale(S, k)).collect();

    // §1.3.2 query: q ⟂ (k0 − k1), so q·k0 = q·k1 exactly, while pointing along k0 + k1
    // (Gram–Schmidt) keeps both scores well above those of k2 and k3.
    let w = add(K[0], K[1]);
    let delta = sub(K[0], K[1]);
    let u = sub(w, scale(dot(w, delta) / dot(delta, delta), delta));
    let q_pair = scale(S, u);
    // §1.4.2 key: the unit vector along q maximises q·k over unit keys (Cauchy–Schwarz):
    // q·k2' = ‖q‖ > q·k0 = q·k1.
    let k2_unit = scale(1.0 / norm(q_pair), q_pair);

    let mut edited_avg = K;
    edited_avg[2] = K[0];
    let mut edited_sel = K;
    edited_sel[2] = k2_unit;
    let pair_scores = scores(q_pair, &K);

    let probes = vec![
        Probe {
            name: "1.2.1 select v0",
            query: format!("q = S·k0 = {}", v3(scale(S, K[0]))),
            keys_used: "K".into(),
            queries: vec![scale(S, K[0])],
            keys: K,
            targets: vec![V[0]],
            why: format!(
                "q = S·k0: k0 is the key most aligned with itself, scores q·K = {}; the gap of \
                 S·(‖k0‖² − k0·k1) = {:.1} makes the softmax one-hot on v0",
                s4(scores(scale(S, K[0]), &K)),
                S * (dot(K[0], K[0]) - dot(K[0], K[1]))
            ),
        },
        Probe {
            name: "1.2.2 identity Q = S·K",
            query: format!("Q = S·K (row i = S·k_i), S = {S}"),
            keys_used: "K".into(),
            queries: q_identity,
            keys: K,
            targets: V.to_vec(),
            why: format!(
                "Q = S·K: row i scores S·k_i·k_j, so row i selects v_i when k_i·k_i exceeds \
                 every k_i·k_j; if some longer k_j out-scored k_i, no S would help (a larger S \
                 only sharpens the wrong choice). Checked: the keys have norms {:.3}–{:.3}, and \
                 the smallest margin k_i·k_i − max_(j≠i) k_i·k_j is {:.3} (row {}, against k{}; \
                 the margins are {:.3}, {:.3}, {:.3}, {:.3}), so S = {S} gives a logit gap of at \
                 least {:.1} and each row puts at most 3·e^(−{:.1}) = {:.1e} on the other \
                 tokens: softmax(Q·Kᵀ) ≈ I and O ≈ V",
                norms.iter().cloned().fold(f64::INFINITY, f64::min),
                norms.iter().cloned().fold(0.0, f64::max),
                min_margin,
                min_row,
                min_rival,
                margins[0].0,
                margins[1].0,
                margins[2].0,
                margins[3].0,
                S * min_margin,
                S * min_margin,
                3.0 * (-S * min_margin).exp()
            ),
        },
        Probe {
            name: "1.3.1 average all",
            query: "q = 0".into(),
            keys_used: "K".into(),
            queries: vec![[0.0; 3]],
            keys: K,
            targets: vec![mean(&V)],
            why: "q = 0: every score is 0, softmax of equal scores is uniform (1/4 each), so the \
                  output is exactly the mean of the values"
                .into(),
        },
        Probe {
            name: "1.3.2 average v0,v1",
            query: format!("q = S·u, u = (k0+k1) ⟂ (k0−k1), q = {}", v3(q_pair)),
            keys_used: "K".into(),
            queries: vec![q_pair],
            keys: K,
            targets: vec![mean(&V[..2])],
            why: format!(
                "q = S·u, u = (k0+k1) made orthogonal to (k0−k1): q·k0 = q·k1 exactly, scores {}; \
                 two equal top scores split the weight 1/2–1/2",
                s4(pair_scores)
            ),
        },
        Probe {
            name: "1.4.1 k2 := k0, avg v0..v2",
            query: "q of 1.3.2".into(),
            keys_used: format!("K with k2 := k0 = {}", v3(K[0])),
            queries: vec![q_pair],
            keys: edited_avg,
            targets: vec![mean(&V[..3])],
            why: format!(
                "k2' = k0 gives q·k2' = q·k0 = q·k1, scores {}: three tied top scores share the \
                 weight 1/3 each",
                s4(scores(q_pair, &edited_avg))
            ),
        },
        Probe {
            name: "1.4.2 k2 := q/‖q‖, select v2",
            query: "q of 1.3.2".into(),
            keys_used: format!("K with k2 := q/‖q‖ = {}", v3(k2_unit)),
            queries: vec![q_pair],
            keys: edited_sel,
            targets: vec![V[2]],
            why: format!(
                "k2' = q/‖q‖ (unit length) maximises q·k2' = ‖q‖ = {:.2} > q·k0 = {:.2}; the gap \
                 {:.1} makes the softmax one-hot on v2. The softmax denominator couples all \
                 tokens, so editing one key changes which values every query mixes",
                norm(q_pair),
                dot(q_pair, K[0]),
                norm(q_pair) - dot(q_pair, K[0])
            ),
        },
    ];

    let measured = probes
        .iter()
        .map(|p| measure(p, &device))
        .collect::<Result<Vec<_>, _>>()?;
    let worst = measured.iter().map(|m| m.error).fold(0.0, f64::max);
    let within = worst <= TOLERANCE;

    let mut rows = Vec::new();
    for (p, m) in probes.iter().zip(&measured) {
        for i in 0..p.queries.len() {
            rows.push(Row {
                label: if p.queries.len() > 1 {
                    format!("{} row {i}", p.name)
                } else {
                    p.name.to_string()
                },
                probe: p,
                index: i,
                query: p.queries[i],
                output: m.attended.outputs[i],
                target: p.targets[i],
                weights: m.attended.weights[i],
                error: m.row_errors[i],
                probe_error: m.error,
            });
        }
    }

    // stdout
    let formula = format!("O = softmax(Q·Kᵀ)·V, no scaling, S = {S}");
    println!("Attention probes (seed 004 §1): {formula}\n");
    println!(
        "{:<34} {:>26} {:>26} {:>32} {:>10}",
        "probe", "output", "target", "weights", "L2 error"
    );
    for r in &rows {
        println!(
            "{:<34} {:>26} {:>26} {:>32} {:>10.2e}",
            r.label,
            v3(r.output),
            v3(r.target),
            w4(r.weights),
            r.error
        );
    }
    let reasons: Vec<String> = probes
        .iter()
        .zip(&measured)
        .map(|(p, m)| {
            let total = if p.queries.len() > 1 {
                format!(" (‖O − V‖ over all four rows: {:.2e})", m.error)
            } else {
                String::new()
            };
            format!("- {}: {}{total}.", p.name, p.why)
        })
        .collect();
    println!("\nWhy it works:");
    for r in &reasons {
        println!("{r}");
    }
    let verdict = format!(
        "Worst error {worst:.2e} {} the tolerance {TOLERANCE}.",
        if within { "is within" } else { "EXCEEDS" }
    );
    println!("\n{verdict}");

    // probes.csv: one line per query row.
    let mut csv = String::from(
        "probe,row,query,keys_used,q,keys,output,target,weights,l2_error,probe_l2_error\n",
    );
    for r in &rows {
        let keys: Vec<f64> = r.probe.keys.iter().flatten().copied().collect();
        let fields = [
            csv_field(r.probe.name),
            r.index.to_string(),
            csv_field(&r.probe.query),
            csv_field(&r.probe.keys_used),
            csv_vec(&r.query),
            csv_vec(&keys),
            csv_vec(&r.output),
            csv_vec(&r.target),
            csv_vec(&r.weights),
            format!("{:.6e}", r.error),
            format!("{:.6e}", r.probe_error),
        ];
        csv.push_str(&fields.join(","));
        csv.push('\n');
    }

    let report = report_md(&formula, &rows, &reasons, &probes, &measured, &verdict);

    std::fs::create_dir_all(&args.out).map_err(|source| ProbeError::Io {
        action: "creating",
        path: args.out.clone(),
        source,
    })?;
    write_file(&args.out.join("probes.csv"), &csv)?;
    write_file(&args.out.join("report.md"), &report)?;
    println!(
        "Wrote {} and {}.",
        args.out.join("probes.csv").display(),
        args.out.join("report.md").display()
    );
    Ok(within)
}

/// The markdown report: the table, why each query works, the answers to the written questions
/// (argued from the computed numbers) and the verdict.
fn report_md(
    formula: &str,
    rows: &[Row],
    reasons: &[String],
    probes: &[Probe],
    measured: &[Measured],
    verdict: &str,
) -> String {
    // The probes by name prefix (the list above is fixed, so each is present).
    let find = |prefix: &str| {
        let i = probes
            .iter()
            .position(|p| p.name.starts_with(prefix))
            .unwrap_or(0);
        (&probes[i], &measured[i])
    };
    let scores_of = |p: &Probe, row: usize| p.keys.map(|k| dot(p.queries[row], k));
    // Top score minus the runner-up.
    let top_gap = |s: [f64; 4]| {
        let mut sorted = s;
        sorted.sort_by(|a, b| b.total_cmp(a));
        sorted[0] - sorted[1]
    };

    let (p121, m121) = find("1.2.1");
    let (_, m122) = find("1.2.2");
    let (_, m131) = find("1.3.1");
    let (p132, m132) = find("1.3.2");
    let (p141, m141) = find("1.4.1");
    let (p142, m142) = find("1.4.2");

    let w121 = m121.attended.weights[0];
    let min_self = (0..4)
        .map(|i| m122.attended.weights[i][i])
        .fold(f64::INFINITY, f64::min);
    let s132 = scores_of(p132, 0);
    let w132 = m132.attended.weights[0];
    let s141 = scores_of(p141, 0);
    let w141 = m141.attended.weights[0];
    let s142 = scores_of(p142, 0);
    let w142 = m142.attended.weights[0];

    let mut md = String::new();
    let _ = writeln!(md, "# Attention probes (seed 004 §1)\n");
    let _ = writeln!(
        md,
        "{formula}. Keys and values are the exercise's (d = 3, n = 4); every output is \
         computed by the crate's `scaled_dot_product_attention` (scale 1, no mask) on the CPU \
         backend in f32. Command: `cargo run --release --example attention_probe -- --out \
         docs/results/attention_probe`; the same numbers at full precision are in \
         [probes.csv](probes.csv).\n"
    );
    let _ = writeln!(
        md,
        "| probe | query | keys | output | target | weights | L2 error |\n|---|---|---|---|---|---|---|"
    );
    for r in rows {
        let (query, keys) = if r.index == 0 {
            (r.probe.query.as_str(), r.probe.keys_used.as_str())
        } else {
            ("″", "″")
        };
        let query = if r.probe.queries.len() > 1 {
            format!("{query}; row {}: {}", r.index, v3(r.query))
        } else {
            query.to_string()
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {:.2e} |",
            r.label,
            query,
            keys,
            v3(r.output),
            v3(r.target),
            w4(r.weights),
            r.error
        );
    }
    let _ = writeln!(md, "\n{verdict}\n\n## Why each query works\n");
    for r in reasons {
        let _ = writeln!(md, "{r}");
    }

    let _ = writeln!(md, "\n## Written questions\n");
    let _ = writeln!(
        md,
        "**§1.2.3 (copying / selection for language modeling).** The 1.2.1 query puts {:.7} \
         of its weight on token 0 because its score beats the runner-up by {:.1} (a softmax \
         ratio of e^{:.1}), so the output is v0 to within {:.1e}; in 1.2.2 each of the four \
         queries does the same for its own token (smallest self-weight {:.7}, ‖O − V‖ = \
         {:.1e}). For language modeling this means a position can retrieve one earlier token's \
         content essentially unchanged (a name to repeat, the token that followed an earlier \
         occurrence of the current one, a bracket to close) instead of a blur of the context, \
         and different positions can retrieve different tokens in the same layer. The \
         selection is only as sharp as S times the score margin, so exact copying needs large \
         query norms or well-separated keys.\n",
        w121[0],
        top_gap(scores_of(p121, 0)),
        top_gap(scores_of(p121, 0)),
        m121.error,
        min_self,
        m122.error
    );
    let _ = writeln!(
        md,
        "**§1.3.3 (averaging / aggregation for language modeling).** With q = 0 every score \
         is 0 and the weights are exactly {}, so the output is the mean of all four values \
         (error {:.1e}); the 1.3.2 query gives k0 and k1 the same score {:.2} and k2, k3 at \
         most {:.2}, so the weights are {:.4} / {:.4} with only {:.1e} left on the other two \
         tokens. Averaging lets one position summarize a set of tokens in one vector (pooling \
         evidence such as sentiment words, agreement cues or the topic), and the selective \
         version chooses that set by content, since only keys that score high against the \
         query enter the average wherever they sit in the sequence.\n",
        w4(m131.attended.weights[0]),
        m131.error,
        s132[0],
        s132[2].max(s132[3]),
        w132[0],
        w132[1],
        w132[2] + w132[3]
    );
    let _ = writeln!(
        md,
        "**§1.4.3 (why editing k2 changes an output that ignored token 2).** Before the edit \
         k2 scored {:.2} against q, {:.1} below k0 and k1, so its weight was {:.1e}: it added \
         nothing to the output but was still a term of the softmax's denominator \
         Σ_j exp(q·k_j). Setting k2 := k0 raises that term to the top score {:.2}, so v0 and \
         v1 drop from {:.3} to {:.3} each and v2 takes {:.3}; setting k2 := q/‖q‖ scores \
         {:.2}, {:.1} above k0, so v2 takes {:.4} and v0, v1 fall to {:.1e}. Because softmax \
         normalizes over every key, each token's weight depends on all the other keys, so \
         editing (or adding) any token can redirect an output without touching the query.",
        s132[2],
        s132[0] - s132[2],
        w132[2],
        s141[2],
        w132[0],
        w141[0],
        w141[2],
        s142[2],
        s142[2] - s142[0],
        w142[2],
        w142[0]
    );
    md
}
