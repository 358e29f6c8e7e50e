//! Table and plot of the `scan` criterion bench: median time vs `L` per method.
//!
//! `cargo bench --bench scan` first, then
//! `cargo run --release --example scan_plot -- [--criterion DIR] [--out DIR]`.
//! Reads `<criterion>/<group>/<method>/<L>/new/estimates.json` (median point estimate, ns),
//! prints a markdown table per group and writes `scan.png` (one panel per group) to `--out`.

// Only the plotting module of the experiment drivers (`common/`), not all of them.
#[allow(dead_code)]
#[path = "common/plot.rs"]
mod plot;

use std::path::{Path, PathBuf};

use clap::Parser;
use plotters::prelude::*;

/// Command-line options.
#[derive(Parser, Debug)]
struct Args {
    /// Criterion output directory.
    #[arg(long, default_value = "target/criterion")]
    criterion: PathBuf,
    /// Output directory for `scan.png`.
    #[arg(long, default_value = "docs/results")]
    out: PathBuf,
}

const GROUPS: [&str; 2] = ["forward", "forward_backward"];
const METHODS: [&str; 4] = ["sequential", "parallel", "log_space", "fused"];
const LENGTHS: [usize; 4] = [64, 256, 1024, 4096];

/// The median point estimate (ns) in a criterion `estimates.json`, without a JSON dependency:
/// the number after `"point_estimate":` inside the `"median"` object.
fn median_ns(path: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    let median = &text[text.find("\"median\"")?..];
    let rest = &median[median.find("\"point_estimate\":")? + "\"point_estimate\":".len()..];
    let end = rest.find([',', '}'])?;
    rest[..end].trim().parse().ok()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    // medians[g][m][i] in ms, None when missing.
    let mut medians = vec![vec![vec![None; LENGTHS.len()]; METHODS.len()]; GROUPS.len()];
    for (g, group) in GROUPS.iter().enumerate() {
        println!("\n### {group} (median, ms)\n");
        println!("| L | {} |", METHODS.join(" | "));
        println!("|---|{}", "---|".repeat(METHODS.len()));
        for (i, l) in LENGTHS.iter().enumerate() {
            let mut row = format!("| {l} |");
            for (m, method) in METHODS.iter().enumerate() {
                let p = args
                    .criterion
                    .join(group)
                    .join(method)
                    .join(l.to_string())
                    .join("new/estimates.json");
                let v = median_ns(&p).map(|ns| ns / 1e6);
                medians[g][m][i] = v;
                row += &v.map_or(" – |".to_string(), |v| format!(" {v:.3} |"));
            }
            println!("{row}");
        }
    }
    std::fs::create_dir_all(&args.out)?;
    let path = args.out.join("scan.png");
    plot(&path, &medians)?;
    println!("\nwrote {}", path.display());
    Ok(())
}

fn plot(path: &Path, medians: &[Vec<Vec<Option<f64>>>]) -> Result<(), Box<dyn std::error::Error>> {
    let text = plot::font_ready();
    let root = BitMapBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((1, GROUPS.len()));
    let colors = [RED, BLUE, MAGENTA, GREEN];
    for ((panel, group), data) in panels.iter().zip(GROUPS).zip(medians) {
        let all: Vec<f64> = data.iter().flatten().flatten().copied().collect();
        let lo = all.iter().copied().fold(f64::INFINITY, f64::min).min(1.0) / 2.0;
        let hi = all.iter().copied().fold(0.0, f64::max).max(1.0) * 2.0;
        let mut builder = ChartBuilder::on(panel);
        builder
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(60);
        if text {
            builder.caption(format!("{group}: B=8, E=64, N=16"), ("sans-serif", 20));
        }
        let mut chart =
            builder.build_cartesian_2d((48f64..5500.0).log_scale(), (lo..hi).log_scale())?;
        let mut mesh = chart.configure_mesh();
        if text {
            mesh.x_desc("L")
                .y_desc("median time (ms)")
                .x_label_formatter(&|v| format!("{v:.0}"))
                .y_label_formatter(&|v| format!("{v:.0e}"));
        } else {
            mesh.x_labels(0).y_labels(0);
        }
        mesh.draw()?;
        for ((method, series), color) in METHODS.iter().zip(data).zip(colors) {
            let points: Vec<(f64, f64)> = LENGTHS
                .iter()
                .zip(series)
                .filter_map(|(&l, v)| v.map(|v| (l as f64, v)))
                .collect();
            let s = chart.draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?;
            if text {
                s.label(*method)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            }
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        }
        if text {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE)
                .border_style(BLACK)
                .draw()?;
        }
    }
    root.present()?;
    Ok(())
}
