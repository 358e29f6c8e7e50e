//! A progress display for training runs: one bar per run on a terminal (several runs in
//! parallel threads share one multi-bar), plain lines every tenth of the budget otherwise.

use std::io::IsTerminal;
use std::sync::OnceLock;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use seqlayers::train::{TrainEvent, TrainObserver};

/// Progress of one run on stderr.
pub struct Progress {
    bar: ProgressBar,
    /// Print a line every this many steps (0: never), when stderr is not a terminal.
    line_every: usize,
    next_line: usize,
    name: String,
    steps: usize,
}

impl Progress {
    /// A display named `name` for a run of `steps` steps; `enabled = false` shows nothing.
    pub fn new(name: &str, steps: usize, enabled: bool) -> Self {
        static BARS: OnceLock<MultiProgress> = OnceLock::new();
        let terminal = std::io::stderr().is_terminal();
        let bar = if enabled && terminal {
            BARS.get_or_init(MultiProgress::new)
                .add(ProgressBar::new(steps as u64))
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} {bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
            )
            .expect("static template"),
        );
        bar.set_prefix(name.to_string());
        let line_every = if enabled && !terminal {
            steps.div_ceil(10).max(1)
        } else {
            0
        };
        Self {
            bar,
            line_every,
            next_line: line_every,
            name: name.to_string(),
            steps,
        }
    }
}

impl TrainObserver for Progress {
    fn on_event(&mut self, event: TrainEvent) {
        match event {
            TrainEvent::Started { .. } => {}
            TrainEvent::Step { .. } => self.bar.inc(1),
            TrainEvent::Evaluated(p) => {
                self.bar
                    .set_message(format!("loss {:.3} test {:.3}", p.loss, p.test_score));
                if self.line_every > 0 && p.step >= self.next_line {
                    self.next_line = p.step + self.line_every;
                    eprintln!(
                        "{} step {}/{}: loss {:.3}, test {:.3}",
                        self.name, p.step, self.steps, p.loss, p.test_score
                    );
                }
            }
            TrainEvent::Finished {
                diverged,
                steps_run,
            } => {
                if diverged {
                    if self.line_every > 0 {
                        eprintln!("{} diverged after step {steps_run}", self.name);
                    }
                    self.bar.abandon_with_message("diverged");
                } else {
                    self.bar.finish_and_clear();
                }
            }
        }
    }
}
