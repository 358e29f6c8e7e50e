//! The one path of every experiment example: flags → checked options → runs → CSV files and
//! `report.md` → plots → the report printed.
//!
//! An experiment implements [`Experiment`]; its example's `main` is one call of [`drive`], and
//! the test suite calls [`execute`] (through each experiment's entry point, e.g.
//! `copying::copying`) to run the `--quick` versions without plots.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use seqlayers::burn::module::AutodiffModule;
use seqlayers::burn::tensor::backend::AutodiffBackend;
use seqlayers::data::Task;
use seqlayers::train::{
    ParallelConfig, SequenceModel, TrainConfig, TrainObserver, TrainReport, train,
    train_data_parallel,
};
use seqlayers::{Result, SeqError};

use super::cli::{CliError, RunArgs, or_exit};
use super::experiments::{prepare_out_dir, write_files};

/// One experiment example.
pub trait Experiment {
    /// Its flags (a clap struct that flattens [`RunArgs`]).
    type Args;
    /// Its settings, from the flags or built by a test.
    type Options;
    /// What a run returns: the outcomes (and whatever the report needs besides).
    type Outcome;

    /// The options of `args`, checked before any training: every flag value, the input files
    /// and every run, so that a bad command line fails at once with a message.
    fn options(args: &Self::Args) -> std::result::Result<Self::Options, CliError>;

    /// The output folder.
    fn out_dir(o: &Self::Options) -> &Path;

    /// Checks that cannot wait for the training (run before the output folder is created).
    fn check(_o: &Self::Options) -> Result<()> {
        Ok(())
    }

    /// Trains and evaluates every run.
    fn run<B: AutodiffBackend>(o: &Self::Options, device: &B::Device) -> Result<Self::Outcome>;

    /// The data files, `(name, text)`: `summary.csv`, `curves.csv`, ….
    fn csv(outcome: &Self::Outcome) -> Vec<(&'static str, String)>;

    /// `report.md`: the setting, tables and findings computed from the numbers.
    fn report(o: &Self::Options, outcome: &Self::Outcome) -> String;

    /// The PNG plots (each failure is printed as a warning: the CSV files hold every number).
    fn plots(o: &Self::Options, outcome: &Self::Outcome);
}

/// Runs experiment `E` with `options` on backend `B` and writes its CSV files and `report.md`
/// (the folder is created, and checked to be writable, before any training).
pub fn execute<E: Experiment, B: AutodiffBackend>(
    options: &E::Options,
    device: &B::Device,
) -> Result<E::Outcome> {
    E::check(options)?;
    let dir = E::out_dir(options);
    prepare_out_dir(dir)?;
    let outcome = E::run::<B>(options, device)?;
    let report = E::report(options, &outcome);
    write_files(
        dir,
        E::csv(&outcome).into_iter().chain([("report.md", report)]),
    )?;
    Ok(outcome)
}

/// The `main` of an experiment example: checks `args` (a bad one exits with code 2 and a
/// message), runs on the backend of `flags` (the [`RunArgs`] in `args`) with its `--jobs`,
/// writes the outputs and plots, and prints `report.md` with the wall time.
pub fn drive<E: Experiment>(args: &E::Args, flags: &RunArgs) {
    let options = or_exit(E::options(args));
    PEERS.store(flags.peers, Ordering::Relaxed);
    super::memory::keep_freed_memory();
    super::parallel::one_core_per_job(flags.jobs);
    let started = Instant::now();
    let outcome = crate::with_backend!(flags.device.as_str(), |B, device| {
        execute::<E, B>(&options, &device)
    });
    let outcome = or_exit(outcome);
    E::plots(&options, &outcome);
    let dir = E::out_dir(&options);
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap_or_default();
    println!("{report}");
    println!(
        "total wall time: {:.1} s; outputs in {}",
        started.elapsed().as_secs_f64(),
        dir.display()
    );
}

/// `--peers` of the running example (1 unless [`drive`] was given another).
static PEERS: AtomicUsize = AtomicUsize::new(1);

/// Trains as [`train`] does, or with `--peers N` above 1 as [`train_data_parallel`] with N peer
/// threads of `config.batch_size / N` rows each (the same steps up to f32 rounding).
///
/// Errors: [`SeqError::PeerCount`] when N does not divide the batch; the trainers' own.
pub fn fit<B, M, T>(
    model: M,
    task: &T,
    config: &TrainConfig,
    device: &B::Device,
    observer: &mut dyn TrainObserver,
) -> Result<(M, TrainReport)>
where
    B: AutodiffBackend,
    M: SequenceModel<B> + AutodiffModule<B>,
    M::InnerModule: SequenceModel<B::InnerBackend>,
    T: Task + ?Sized,
{
    let peers = PEERS.load(Ordering::Relaxed);
    if peers <= 1 {
        return train(model, task, config, device, observer);
    }
    if !config.batch_size.is_multiple_of(peers) {
        return Err(SeqError::PeerCount {
            peers,
            problem: format!(
                "--peers {peers} does not divide the batch of {} rows; pick a --batch that it divides",
                config.batch_size
            ),
        });
    }
    let per_peer = TrainConfig {
        batch_size: config.batch_size / peers,
        ..config.clone()
    };
    train_data_parallel(
        model,
        task,
        &per_peer,
        &ParallelConfig::new(peers),
        std::slice::from_ref(device),
        observer,
    )
}
