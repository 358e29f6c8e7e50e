//! Seed 002, Pig-Latin: an encoder–decoder transformer and a Mamba translator at hidden 32 and
//! 64 on the small and large word lists, Mamba's discretizations, latency and interpretability.
//!
//! ```sh
//! cargo run --release --example pig_latin -- --quick          # seconds
//! cargo run --release --example pig_latin -- --jobs 2         # the homework's grid
//! cargo run --release --example pig_latin -- --model transformer --hidden 64 --data large
//! cargo run --release --example pig_latin -- --words my_words.txt --quick
//! ```
//!
//! Writes `summary.csv`, `curves.csv`, `mistakes.csv`, loss/accuracy curves, cross-attention
//! heatmaps, Mamba Δ/retention plots and `report.md` to `--out` (default `results/pig_latin`).

mod common;

use std::time::Instant;

use clap::Parser;
use common::cli::or_exit;
use common::pig_latin::{
    PigLatinArgs, PigLatinOptions, PigLatinOutcome, Translator, pig_latin, pig_latin_options,
};
use common::plot::{Series, heatmap, line_plot};
use common::warn_on_error;

fn plots(options: &PigLatinOptions, outcomes: &[PigLatinOutcome]) {
    let dir = &options.out_dir;
    let epoch = |o: &PigLatinOutcome, step: usize| (step * o.batch) as f64 / o.train_words as f64;
    for (what, file, pick) in [
        ("training loss", "train_loss.png", 0),
        ("validation loss", "val_loss.png", 1),
        (
            "validation word accuracy (fixed batch)",
            "val_accuracy.png",
            2,
        ),
    ] {
        let series: Vec<Series> = outcomes
            .iter()
            .map(|o| Series {
                name: o.run.label(),
                points: o
                    .report
                    .curve
                    .iter()
                    .filter(|p| p.step > 0)
                    .map(|p| {
                        let y = [p.mean_loss, p.test_loss, p.test_score][pick];
                        (
                            epoch(o, p.step),
                            if pick < 2 { y.max(1e-4).log10() } else { y },
                        )
                    })
                    .collect(),
            })
            .collect();
        let y_label = if pick < 2 {
            format!("log10 {what}")
        } else {
            what.to_string()
        };
        warn_on_error(line_plot(
            &dir.join(file),
            &format!("Pig-Latin: {what}"),
            "epoch",
            &y_label,
            &series,
            false,
        ));
    }
    for o in outcomes {
        let tag = format!(
            "{}_d{}_{}{}",
            o.run.model.name(),
            o.run.hidden,
            o.run.data.name(),
            if o.run.model == Translator::Mamba {
                format!("_{}", o.run.disc.name())
            } else {
                String::new()
            }
        );
        for p in &o.probes {
            let letters: Vec<String> = p.english.chars().map(String::from).collect();
            match o.run.model {
                Translator::Transformer => {
                    let outputs: Vec<String> = p
                        .target
                        .chars()
                        .map(String::from)
                        .chain(["</s>".to_string()])
                        .collect();
                    warn_on_error(heatmap(
                        &dir.join(format!("cross_attention_{tag}_{}.png", p.english)),
                        &format!("{} → {}: cross-attention (last block)", p.english, p.target),
                        &outputs,
                        &letters,
                        &p.rows,
                    ));
                }
                Translator::Mamba => {
                    let n = p.english.len();
                    let series = vec![
                        Series {
                            name: "mean Δ, block 1 (x SOS y)".into(),
                            points: p.rows[0]
                                .iter()
                                .enumerate()
                                .map(|(t, &v)| (t as f64, v))
                                .collect(),
                        },
                        Series {
                            name: "weight kept in the state at SOS".into(),
                            points: p.rows[1]
                                .iter()
                                .enumerate()
                                .take(n + 1)
                                .map(|(t, &v)| (t as f64, v))
                                .collect(),
                        },
                    ];
                    warn_on_error(line_plot(
                        &dir.join(format!("mamba_state_{tag}_{}.png", p.english)),
                        &format!(
                            "{} → {}: Δ and state retention (positions 0..{} are the English letters, {} = SOS)",
                            p.english,
                            p.target,
                            n - 1,
                            n
                        ),
                        "position",
                        "value",
                        &series,
                        false,
                    ));
                }
            }
        }
    }
}

fn main() {
    let args = PigLatinArgs::parse();
    let options = or_exit(pig_latin_options(&args));
    common::memory::keep_freed_memory();
    common::parallel::one_core_per_job(args.run.jobs);
    let started = Instant::now();
    let outcomes = with_backend!(args.run.device.as_str(), |B, device| {
        pig_latin::<B>(&options, &device)
    });
    let outcomes = or_exit(outcomes);
    plots(&options, &outcomes);
    common::print_report(&options.out_dir, started);
}
