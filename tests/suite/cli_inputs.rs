//! The examples' command lines against a table of bad flags and files (issue 21, item 4): each
//! must end with a message that says what to fix and exit code 2, never a panic or a silent
//! run. The rows go through the same clap structs and checking functions that the examples'
//! `main` calls (`examples/common`, mounted as `harness`), and a few good command lines make
//! sure the checks do not refuse what is valid.

use std::path::{Path, PathBuf};

use clap::Parser;
use seqlayers::SeqError;
use seqlayers::data::{TokenKind, Vocabulary};

use crate::harness::associative_recall::associative_recall_options;
use crate::harness::cli::{CliError, EXIT_FAILURE, EXIT_USAGE, RecallArgs, read_text_file};
use crate::harness::copying::{CopyingArgs, copying_options};
use crate::harness::induction_head::induction_head_options;
use crate::harness::pig_latin::{PigLatinArgs, pig_latin_options};
use crate::harness::sentiment::{SentimentArgs, sentiment_options};
use crate::harness::tiny_gpt::{
    TinyGptArgs, TinyGptMode, VocabularyFile, generate_vocabulary, train_options,
};
use seqlayers::burn::config::Config;

/// Input files of the table, written once into a fresh temporary folder.
struct Files {
    dir: PathBuf,
}

impl Files {
    fn new() -> Self {
        // One folder per instance: the tests run in parallel threads and each removes its own.
        let dir = crate::common::scratch_dir("seqlayers-cli-inputs");
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        };
        write("empty.txt", b"");
        write("blank.txt", b"  \n\n \n");
        // A PNG header and a few bytes that are not UTF-8.
        write("binary.bin", b"line one\n\x89PNG\r\n\x1a\n\x00\xff\xfe\x80");
        write("short.txt", b"abcab");
        write("one_char.txt", b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        write("accents.txt", "hello world\nnaïve café\n".as_bytes());
        write("digits.txt", b"123 456\n7 8 9\n");
        let words: String = [
            "apple", "banana", "cherry", "dog", "eagle", "fish", "grape", "house", "igloo",
            "jungle", "kite", "lemon", "mango", "night", "orange", "pear", "queen", "river",
            "stone", "tree",
        ]
        .join("\n");
        write("words.txt", words.as_bytes());
        write(
            "pairs_bad/pig_latin_small.txt",
            b"hello ellohay\nworld\nstring ingstray\n",
        );
        write("pairs_none/pig_latin_small.txt", b"123 231\n4'5 54'\n");
        write("pairs_empty/pig_latin_small.txt", b"");
        // A checkpoint folder whose vocabulary is `\n`, space, a, b, c (the model files are
        // only looked for: the prompt is checked before the model loads).
        let vocabulary = Vocabulary::build("abc ab\nca", TokenKind::Char).unwrap();
        std::fs::create_dir_all(dir.join("ckpt")).unwrap();
        VocabularyFile::of(&vocabulary)
            .save(dir.join("ckpt/vocabulary.json"))
            .unwrap();
        write("ckpt/config.json", b"{}");
        write("ckpt/model.mpk", b"");
        write("ckpt_no_vocab/config.json", b"{}");
        write("ckpt_no_vocab/model.mpk", b"");
        Self { dir }
    }

    /// `args` with `{tmp}` replaced by the folder.
    fn args(&self, args: &[&str]) -> Vec<String> {
        let tmp = self.dir.display().to_string();
        args.iter().map(|a| a.replace("{tmp}", &tmp)).collect()
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Parses `args` as `example`'s command line and runs the checks its `main` runs before any
/// training: `Ok` when the example would start, else the exit code and the message it prints.
fn check(example: &str, args: &[String]) -> Result<(), (i32, String)> {
    let argv = std::iter::once(example.to_string()).chain(args.iter().cloned());
    let clap_error = |e: clap::Error| (e.exit_code(), e.to_string());
    let ours = |e: CliError| (e.exit_code(), e.to_string());
    match example {
        "induction_head" => {
            let a = RecallArgs::try_parse_from(argv).map_err(clap_error)?;
            induction_head_options(&a).map(drop).map_err(ours)
        }
        "associative_recall" => {
            let a = RecallArgs::try_parse_from(argv).map_err(clap_error)?;
            associative_recall_options(&a).map(drop).map_err(ours)
        }
        "tiny_gpt" => match TinyGptArgs::try_parse_from(argv).map_err(clap_error)?.mode {
            TinyGptMode::Train(t) => train_options(&t).map(drop).map_err(ours),
            TinyGptMode::Generate(g) => generate_vocabulary(&g).map(drop).map_err(ours),
        },
        "copying" => {
            let a = CopyingArgs::try_parse_from(argv).map_err(clap_error)?;
            copying_options(&a).map(drop).map_err(ours)
        }
        "pig_latin" => {
            let a = PigLatinArgs::try_parse_from(argv).map_err(clap_error)?;
            pig_latin_options(&a).map(drop).map_err(ours)
        }
        "sentiment" => {
            let a = SentimentArgs::try_parse_from(argv).map_err(clap_error)?;
            sentiment_options(&a).map(drop).map_err(ours)
        }
        other => panic!("no example {other}"),
    }
}

/// `(example, args, a piece of the message)`: every row must be refused with exit code 2.
const BAD: &[(&str, &[&str], &str)] = &[
    // --- induction_head (shared recall flags) ---
    (
        "induction_head",
        &["--steps", "0"],
        "--steps must be at least 1",
    ),
    (
        "induction_head",
        &["--batch", "0"],
        "--batch must be at least 1",
    ),
    (
        "induction_head",
        &["--len", "0"],
        "--len must be at least 1",
    ),
    (
        "induction_head",
        &["--eval-every", "0"],
        "--eval-every must be at least 1",
    ),
    (
        "induction_head",
        &["--eval-samples", "0"],
        "--eval-samples must be at least 1",
    ),
    (
        "induction_head",
        &["--plateau-steps", "0"],
        "--plateau-steps must be at least 1",
    ),
    (
        "induction_head",
        &["--jobs", "0"],
        "--jobs must be at least 1",
    ),
    (
        "induction_head",
        &["--heads", "0"],
        "--heads must be at least 1",
    ),
    (
        "induction_head",
        &["--lr", "0"],
        "--lr must be a number above 0 (got 0)",
    ),
    (
        "induction_head",
        &["--lr=-0.1"],
        "--lr must be a number above 0 (got -0.1)",
    ),
    (
        "induction_head",
        &["--lr", "NaN"],
        "--lr must be a number above 0 (got NaN)",
    ),
    (
        "induction_head",
        &["--seeds", "1,1"],
        "--seeds lists `1` twice",
    ),
    (
        "induction_head",
        &["--seeds", "1,x"],
        "invalid value 'x' for '--seeds",
    ),
    ("induction_head", &["--seeds", "1,,2"], "for '--seeds"),
    (
        "induction_head",
        &["--seed", "3", "--seeds", "1,2"],
        "cannot be used with",
    ),
    (
        "induction_head",
        &["--models", "mamba,mamba"],
        "--models lists `mamba` twice",
    ),
    (
        "induction_head",
        &["--models", "gpt"],
        "unknown model `gpt`",
    ),
    ("induction_head", &["--tau", "0"], "--tau lists 0"),
    ("induction_head", &["--d", "0"], "--d lists 0"),
    (
        "induction_head",
        &["--quick", "--len", "4", "--tau", "5"],
        "shorter than tau + 2",
    ),
    (
        "induction_head",
        &["--quick", "--heads", "3"],
        "divisible by n_heads (3)",
    ),
    (
        "induction_head",
        &["--problem", "2"],
        "--problem applies to associative_recall only",
    ),
    (
        "induction_head",
        &["--device", "tpu"],
        "--device `tpu` is unknown",
    ),
    (
        "induction_head",
        &["--steps", "many"],
        "invalid value 'many' for '--steps",
    ),
    (
        "induction_head",
        &["--stpes", "5"],
        "unexpected argument '--stpes'",
    ),
    // --- associative_recall ---
    (
        "associative_recall",
        &["--problem", "4"],
        "--problem 4: associative_recall has Problems 2 and 3",
    ),
    (
        "associative_recall",
        &["--problem", "2,2"],
        "--problem lists `2` twice",
    ),
    ("associative_recall", &["--m", "0"], "--m lists 0"),
    (
        "associative_recall",
        &["--quick", "--m", "32"],
        "exceeds the vocabulary K = 16",
    ),
    ("associative_recall", &["--m", "4,4"], "--m lists `4` twice"),
    (
        "associative_recall",
        &["--batch", "0"],
        "--batch must be at least 1",
    ),
    // --- tiny_gpt train ---
    (
        "tiny_gpt",
        &["train", "--layers", "0"],
        "--layers must be at least 1",
    ),
    (
        "tiny_gpt",
        &["train", "--steps", "0"],
        "--steps must be at least 1",
    ),
    (
        "tiny_gpt",
        &["train", "--batch", "0"],
        "--batch must be at least 1",
    ),
    (
        "tiny_gpt",
        &["train", "--block-size", "0"],
        "--block-size must be at least 1",
    ),
    (
        "tiny_gpt",
        &["train", "--d-model", "0"],
        "--d-model must be at least 1",
    ),
    (
        "tiny_gpt",
        &["train", "--jobs", "0"],
        "--jobs must be at least 1",
    ),
    (
        "tiny_gpt",
        &["train", "--d-model", "30"],
        "--d-model 30 is not a multiple of the 4 attention heads",
    ),
    (
        "tiny_gpt",
        &["train", "--lr=-1"],
        "--lr must be a number above 0 (got -1)",
    ),
    (
        "tiny_gpt",
        &["train", "--dropout", "1"],
        "--dropout must be at least 0 and below 1 (got 1)",
    ),
    (
        "tiny_gpt",
        &["train", "--words", "1"],
        "--words 1: a word vocabulary needs at least 2 entries",
    ),
    (
        "tiny_gpt",
        &["train", "--ablation", "rope,rope"],
        "--ablation lists `rope` twice",
    ),
    (
        "tiny_gpt",
        &["train", "--ablation", "gpt"],
        "unknown ablation `gpt`",
    ),
    (
        "tiny_gpt",
        &["train", "--ablation", "similarity=cosine:x"],
        "the temperature after `:` must be a number",
    ),
    (
        "tiny_gpt",
        &["train", "--corpus", "{tmp}/missing.txt"],
        "corpus `",
    ),
    (
        "tiny_gpt",
        &["train", "--corpus", "{tmp}/missing.txt"],
        "missing.txt` does not exist; check the path",
    ),
    (
        "tiny_gpt",
        &["train", "--corpus", "{tmp}/empty.txt"],
        "empty.txt` is empty",
    ),
    (
        "tiny_gpt",
        &["train", "--corpus", "{tmp}/blank.txt"],
        "blank.txt` is empty",
    ),
    (
        "tiny_gpt",
        &["train", "--corpus", "{tmp}/binary.bin"],
        "binary.bin`, line 2: not UTF-8 text",
    ),
    (
        "tiny_gpt",
        &["train", "--corpus", "{tmp}"],
        "is a folder; give the path of a text file",
    ),
    (
        "tiny_gpt",
        &["train", "--quick", "--corpus", "{tmp}/short.txt"],
        "5 tokens cannot be cut into 100 blocks",
    ),
    (
        "tiny_gpt",
        &["train", "--quick", "--corpus", "{tmp}/one_char.txt"],
        "fewer than two distinct tokens",
    ),
    (
        "tiny_gpt",
        &["train", "--resume", "{tmp}"],
        "--resume continues one model: give exactly one --ablation",
    ),
    (
        "tiny_gpt",
        &[
            "train",
            "--ablation",
            "standard",
            "--resume",
            "{tmp}/nowhere",
        ],
        "nowhere` is not a folder",
    ),
    (
        "tiny_gpt",
        &["train", "--device", "gpu"],
        "--device `gpu` is unknown",
    ),
    // --- tiny_gpt generate ---
    (
        "tiny_gpt",
        &[
            "generate",
            "--checkpoint",
            "{tmp}/ckpt",
            "--temperature",
            "0",
        ],
        "--temperature must be a number above 0 (got 0)",
    ),
    (
        "tiny_gpt",
        &[
            "generate",
            "--checkpoint",
            "{tmp}/ckpt",
            "--temperature=-0.5",
        ],
        "--temperature must be a number above 0 (got -0.5)",
    ),
    (
        "tiny_gpt",
        &["generate", "--checkpoint", "{tmp}/ckpt", "--top-k", "0"],
        "--top-k must be at least 1",
    ),
    (
        "tiny_gpt",
        &["generate", "--checkpoint", "{tmp}/ckpt", "--tokens", "0"],
        "--tokens must be at least 1",
    ),
    (
        "tiny_gpt",
        &[
            "generate",
            "--checkpoint",
            "{tmp}/ckpt",
            "--prompt",
            "cab xyz",
        ],
        "--prompt has the character 'x', which the model never saw",
    ),
    (
        "tiny_gpt",
        &["generate", "--checkpoint", "{tmp}/ckpt", "--prompt", "ab é"],
        "--prompt has the character 'é'",
    ),
    (
        "tiny_gpt",
        &["generate", "--checkpoint", "{tmp}/ckpt", "--prompt", ""],
        "--prompt is empty",
    ),
    (
        "tiny_gpt",
        &["generate", "--checkpoint", "{tmp}/nowhere"],
        "nowhere` is not a folder",
    ),
    (
        "tiny_gpt",
        &["generate", "--checkpoint", "{tmp}/ckpt_no_vocab"],
        "has no vocabulary.json",
    ),
    (
        "tiny_gpt",
        &["generate", "--checkpoint", "{tmp}/empty.txt"],
        "is not a folder",
    ),
    ("tiny_gpt", &["generate"], "--checkpoint <CHECKPOINT>"),
    ("tiny_gpt", &["sample"], "unrecognized subcommand 'sample'"),
    // --- copying ---
    (
        "copying",
        &["--windowed-heads", "9"],
        "--windowed-heads 9 exceeds the 4 attention heads",
    ),
    (
        "copying",
        &["--models", "T_rope", "--windowed-heads", "5"],
        "--windowed-heads 5 exceeds the 4 attention heads",
    ),
    (
        "copying",
        &["--heads", "2"],
        "--windowed-heads 3 exceeds the 2 attention heads",
    ),
    (
        "copying",
        &["--windowed-heads", "0"],
        "--windowed-heads must be at least 1",
    ),
    ("copying", &["--heads", "0"], "--heads must be at least 1"),
    (
        "copying",
        &["--d-model", "30"],
        "--d-model 30 is not a multiple of the 4 attention heads",
    ),
    (
        "copying",
        &["--vocab", "27"],
        "--vocab 27: the strings use the letters a–z; give at most 26",
    ),
    ("copying", &["--vocab", "0"], "--vocab must be at least 1"),
    ("copying", &["--ngram", "0"], "--ngram must be at least 1"),
    ("copying", &["--steps", "0"], "--steps must be at least 1"),
    ("copying", &["--batch", "0"], "--batch must be at least 1"),
    (
        "copying",
        &["--eval-samples", "0"],
        "--eval-samples must be at least 1",
    ),
    (
        "copying",
        &["--mamba-layers", "0"],
        "--mamba-layers must be at least 1",
    ),
    (
        "copying",
        &["--lr", "inf"],
        "--lr must be a number above 0 (got inf)",
    ),
    ("copying", &["--seeds", "2,2"], "--seeds lists `2` twice"),
    (
        "copying",
        &["--seed", "1", "--seeds", "2"],
        "cannot be used with",
    ),
    (
        "copying",
        &["--task", "copy,copy"],
        "--task lists `copy` twice",
    ),
    (
        "copying",
        &["--models", "mamba,mamba"],
        "--models lists `mamba` twice",
    ),
    ("copying", &["--models", "gpt"], "unknown model `gpt`"),
    (
        "copying",
        &["--state-sizes", "0,4"],
        "--state-sizes lists 0",
    ),
    ("copying", &["--train-len", "0..5"], "need 1 ≤ MIN ≤ MAX"),
    ("copying", &["--train-len", "9..3"], "need 1 ≤ MIN ≤ MAX"),
    (
        "copying",
        &["--eval-len", "abc"],
        "`abc` is not a length range",
    ),
    (
        "copying",
        &["--task", "suffix", "--train-len", "2..8", "--ngram", "3"],
        "strings of 2 letters leave no answer after a 3-gram key",
    ),
    (
        "copying",
        &["--sweep-only", "--models", "T_rope"],
        "the state-size sweep alone needs the copy task",
    ),
    (
        "copying",
        &["--sweep-only", "--no-sweep"],
        "cannot be used with",
    ),
    ("copying", &["--device", "tpu"], "--device `tpu` is unknown"),
    // --- pig_latin ---
    (
        "pig_latin",
        &["--epochs", "0"],
        "--epochs must be a number above 0 (got 0)",
    ),
    (
        "pig_latin",
        &["--epochs=-2"],
        "--epochs must be a number above 0 (got -2)",
    ),
    (
        "pig_latin",
        &["--epochs", "inf"],
        "--epochs must be a number above 0 (got inf)",
    ),
    (
        "pig_latin",
        &["--steps", "5", "--epochs", "2"],
        "cannot be used with",
    ),
    ("pig_latin", &["--steps", "0"], "--steps must be at least 1"),
    ("pig_latin", &["--batch", "0"], "--batch must be at least 1"),
    (
        "pig_latin",
        &["--transformer-layers", "0"],
        "--transformer-layers must be at least 1",
    ),
    (
        "pig_latin",
        &["--mamba-layers", "0"],
        "--mamba-layers must be at least 1",
    ),
    ("pig_latin", &["--hidden", "0"], "--hidden lists 0"),
    (
        "pig_latin",
        &["--hidden", "32,32"],
        "--hidden lists `32` twice",
    ),
    (
        "pig_latin",
        &["--hidden", "56"],
        "--hidden 56: the transformer has hidden/16 = 3 heads",
    ),
    (
        "pig_latin",
        &["--model", "mamba,mamba"],
        "--model lists `mamba` twice",
    ),
    (
        "pig_latin",
        &["--model", "gpt"],
        "invalid value 'gpt' for '--model",
    ),
    (
        "pig_latin",
        &["--data", "small,small"],
        "--data lists `small` twice",
    ),
    (
        "pig_latin",
        &["--sweep", "foo"],
        "--sweep: unknown discretization `foo`",
    ),
    ("pig_latin", &["--heads", "0"], "--heads lists 0"),
    ("pig_latin", &["--heads", "4,4"], "--heads lists `4` twice"),
    (
        "pig_latin",
        &["--heads", "3"],
        "--heads 3 does not divide --hidden 32",
    ),
    (
        "pig_latin",
        &["--positions", "rope"],
        "invalid value 'rope' for '--positions",
    ),
    (
        "pig_latin",
        &["--positions", "learned,learned"],
        "--positions lists `learned` twice",
    ),
    (
        "pig_latin",
        &["--model", "mamba", "--heads", "2"],
        "--heads and --positions set the transformer",
    ),
    (
        "pig_latin",
        &["--model", "transformer", "--mamba-a", "fixed-identity"],
        "--mamba-a and --mamba-dt set the Mamba translator",
    ),
    (
        "pig_latin",
        &["--mamba-a", "identity"],
        "invalid value 'identity' for '--mamba-a",
    ),
    (
        "pig_latin",
        &["--mamba-dt", "constant:0"],
        "--mamba-dt constant:0: the constant step size must be a finite number above 0",
    ),
    (
        "pig_latin",
        &["--mamba-dt=constant:-0.5"],
        "--mamba-dt constant:-0.5: the constant step size must be",
    ),
    (
        "pig_latin",
        &["--mamba-dt", "constant:fast"],
        "--mamba-dt: `fast` in `constant:fast` is not a number",
    ),
    (
        "pig_latin",
        &["--mamba-dt", "selective"],
        "--mamba-dt: unknown step size `selective`",
    ),
    (
        "pig_latin",
        &["--mamba-dt", "learned,learned"],
        "--mamba-dt lists `learned` twice",
    ),
    (
        "pig_latin",
        &["--optimizer", "lion"],
        "invalid value 'lion' for '--optimizer",
    ),
    (
        "pig_latin",
        &["--schedule", "step"],
        "invalid value 'step' for '--schedule",
    ),
    ("pig_latin", &["--lr", "0"], "--lr must be a number above 0"),
    ("pig_latin", &["--jobs", "0"], "--jobs must be at least 1"),
    ("pig_latin", &["--peers", "0"], "--peers must be at least 1"),
    (
        "pig_latin",
        &["--words", "{tmp}/missing.txt"],
        "missing.txt` does not exist; check the path",
    ),
    (
        "pig_latin",
        &["--words", "{tmp}/empty.txt"],
        "empty.txt` is empty",
    ),
    (
        "pig_latin",
        &["--words", "{tmp}/binary.bin"],
        "binary.bin`, line 2: not UTF-8 text",
    ),
    (
        "pig_latin",
        &["--words", "{tmp}/accents.txt"],
        "accents.txt`, line 2: `naïve` has a letter outside a–z",
    ),
    (
        "pig_latin",
        &["--words", "{tmp}/digits.txt"],
        "the word list holds no word of letters a–z",
    ),
    (
        "pig_latin",
        &["--words", "{tmp}/words.txt", "--data", "small,large"],
        "--words replaces the word lists",
    ),
    (
        "pig_latin",
        &["--quick", "--data-dir", "{tmp}/pairs_bad"],
        "pig_latin_small.txt`, line 2: expected two words `english piglatin`, found 1",
    ),
    (
        "pig_latin",
        &["--quick", "--data-dir", "{tmp}/pairs_none"],
        "pig_latin_small.txt`: no usable `english piglatin` pair",
    ),
    (
        "pig_latin",
        &["--quick", "--data-dir", "{tmp}/pairs_empty"],
        "pig_latin_small.txt` is empty",
    ),
    (
        "pig_latin",
        &[
            "--quick",
            "--data-dir",
            "{tmp}/pairs_bad",
            "--data",
            "large",
        ],
        "pig_latin_large.txt` does not exist",
    ),
    (
        "pig_latin",
        &["--data-dir", "{tmp}/nowhere"],
        "--data-dir `",
    ),
    (
        "pig_latin",
        &["--data-dir", "{tmp}/nowhere"],
        "nowhere` is not a folder",
    ),
    (
        "pig_latin",
        &["--device", "tpu"],
        "--device `tpu` is unknown",
    ),
    // --- sentiment ---
    (
        "sentiment",
        &["--quick", "--max-length", "0"],
        "--max-length must be at least 1",
    ),
    (
        "sentiment",
        &["--quick", "--max-length", "2"],
        "--max-length 2: a sentence needs [CLS], [SEP] and at least one token",
    ),
    (
        "sentiment",
        &["--quick", "--max-length", "65"],
        "--max-length 65 exceeds the model's 64 positions",
    ),
    (
        "sentiment",
        &["--quick", "--epochs", "0"],
        "--epochs must be at least 1",
    ),
    (
        "sentiment",
        &["--quick", "--scratch-epochs", "0"],
        "--scratch-epochs must be at least 1",
    ),
    (
        "sentiment",
        &["--quick", "--steps", "5"],
        "--steps does not apply: sentiment trains by epochs",
    ),
    (
        "sentiment",
        &["--quick", "--jobs", "2"],
        "--jobs 2: sentiment trains one model at a time",
    ),
    (
        "sentiment",
        &["--quick", "--peers", "2"],
        "--peers 2: sentiment fine-tuning runs its own epoch loop",
    ),
    (
        "sentiment",
        &["--quick", "--seeds", "1,2,1"],
        "--seeds lists `1` twice",
    ),
    (
        "sentiment",
        &["--quick", "--grid-batch", "16,0"],
        "--grid-batch lists 0",
    ),
    (
        "sentiment",
        &["--quick", "--grid-batch", "16,16"],
        "--grid-batch lists `16` twice",
    ),
    (
        "sentiment",
        &["--quick", "--grid-lr", "0"],
        "--grid-lr must be a number above 0",
    ),
    (
        "sentiment",
        &["--quick", "--grid-lr", "1e-3,0.001"],
        "--grid-lr lists `0.001` twice",
    ),
    (
        "sentiment",
        &["--quick", "--optimizers", "lbfgs"],
        "--optimizers: unknown optimizer `lbfgs`",
    ),
    (
        "sentiment",
        &["--quick", "--optimizers", "sgd:fast"],
        "`fast` in `sgd:fast` is not a learning rate",
    ),
    (
        "sentiment",
        &["--quick", "--optimizers", "sgd:0"],
        "the learning rate must be a number above 0",
    ),
    (
        "sentiment",
        &["--quick", "--optimizers", "sgd,sgd:0.1"],
        "--optimizers lists `sgd` twice",
    ),
    (
        "sentiment",
        &["--quick", "--optimizers", "none,sgd"],
        "--optimizers none: give `none` alone",
    ),
    (
        "sentiment",
        &["--quick", "--baselines", "probe,bow"],
        "--baselines: unknown baseline `bow`",
    ),
    (
        "sentiment",
        &["--quick", "--baselines", "probe,probe"],
        "--baselines lists `probe` twice",
    ),
    (
        "sentiment",
        &["--quick", "--pooling", "max"],
        "invalid value 'max' for '--pooling",
    ),
    (
        "sentiment",
        &["--model-dir", "{tmp}/nowhere"],
        "run `bash scripts/fetch_pretrained.sh`",
    ),
    (
        "sentiment",
        &["--quick", "--device", "tpu"],
        "--device `tpu` is unknown",
    ),
    // --- the shared seed flags: one seed where there is no across-seed report ---
    (
        "pig_latin",
        &["--seeds", "1,2"],
        "--seeds: pig_latin runs one seed",
    ),
    (
        "pig_latin",
        &["--seed", "1", "--seeds", "2"],
        "cannot be used with",
    ),
    (
        "tiny_gpt",
        &["train", "--seeds", "1,2"],
        "--seeds: tiny_gpt runs one seed",
    ),
];

/// Command lines the checks must accept (so that a check refusing everything fails).
const GOOD: &[(&str, &[&str])] = &[
    ("induction_head", &["--quick"]),
    (
        "induction_head",
        &["--quick", "--seeds", "0,1", "--tau", "1", "--heads", "2"],
    ),
    (
        "associative_recall",
        &["--quick", "--problem", "2", "--m", "4"],
    ),
    ("tiny_gpt", &["train", "--quick"]),
    (
        "tiny_gpt",
        &["train", "--quick", "--ablation", "mamba", "--d-model", "30"],
    ),
    (
        "tiny_gpt",
        &[
            "generate",
            "--checkpoint",
            "{tmp}/ckpt",
            "--prompt",
            "cab\nab",
        ],
    ),
    ("copying", &["--quick"]),
    (
        "copying",
        &[
            "--quick",
            "--models",
            "T_rope,mamba",
            "--heads",
            "2",
            "--seeds",
            "0,1",
        ],
    ),
    ("copying", &["--windowed-heads", "4"]),
    ("pig_latin", &["--quick", "--epochs", "0.5"]),
    ("pig_latin", &["--quick", "--words", "{tmp}/words.txt"]),
    ("pig_latin", &["--quick", "--seeds", "3"]),
    ("tiny_gpt", &["train", "--quick", "--seed", "3"]),
    ("sentiment", &["--quick"]),
    (
        "sentiment",
        &[
            "--quick",
            "--optimizers",
            "none",
            "--baselines",
            "probe,mamba",
            "--pooling",
            "cls",
            "--max-length",
            "64",
            "--seed",
            "2",
        ],
    ),
    (
        "sentiment",
        &[
            "--quick",
            "--optimizers",
            "adagrad:0.05,sgd",
            "--search-train",
            "0",
        ],
    ),
];

#[test]
fn every_bad_command_line_is_refused_with_exit_code_2_and_a_message_that_says_what_to_fix() {
    let files = Files::new();
    let mut failures = Vec::new();
    for &(example, args, expected) in BAD {
        let args = files.args(args);
        let line = format!("{example} {}", args.join(" "));
        match check(example, &args) {
            Ok(()) => failures.push(format!("{line}: accepted (expected `{expected}`)")),
            Err((code, message)) => {
                if code != EXIT_USAGE {
                    failures.push(format!("{line}: exit code {code}, not 2 ({message})"));
                }
                if !message.contains(&files.args(&[expected])[0]) {
                    failures.push(format!("{line}: `{message}` lacks `{expected}`"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_known_weak_answers_are_gone() {
    let files = Files::new();
    let message = |example: &str, args: &[&str]| {
        check(example, &files.args(args))
            .expect_err("a bad command line")
            .1
    };
    let layers = message("tiny_gpt", &["train", "--layers", "0"]);
    assert!(!layers.contains("unknown layer kind"), "{layers}");
    let binary = message("tiny_gpt", &["train", "--corpus", "{tmp}/binary.bin"]);
    assert!(!binary.contains("check the path"), "{binary}");
    let binary = message("pig_latin", &["--words", "{tmp}/binary.bin"]);
    assert!(!binary.contains("check the path"), "{binary}");
    let none = message("pig_latin", &["--quick", "--data-dir", "{tmp}/pairs_none"]);
    assert!(!none.contains("line 0"), "{none}");
}

#[test]
fn good_command_lines_pass_the_checks() {
    let files = Files::new();
    for &(example, args) in GOOD {
        let args = files.args(args);
        if let Err((code, message)) = check(example, &args) {
            panic!("{example} {}: refused ({code}): {message}", args.join(" "));
        }
    }
}

#[test]
fn exit_codes_split_bad_inputs_from_failed_runs() {
    let usage = [
        CliError::usage("--steps must be at least 1"),
        SeqError::ZeroSize { name: "steps" }.into(),
        SeqError::InvalidConfig("x".into()).into(),
        SeqError::OutOfRange {
            name: "lr",
            value: 0.0,
            expected: "> 0",
        }
        .into(),
        SeqError::Read {
            path: "a".into(),
            message: "b".into(),
        }
        .into(),
        SeqError::BadData {
            origin: "a".into(),
            line: 1,
            message: "b".into(),
        }
        .into(),
        SeqError::Checkpoint {
            path: "a".into(),
            problem: "b".into(),
        }
        .into(),
        SeqError::Write {
            path: "a".into(),
            message: "b".into(),
        }
        .into(),
        SeqError::HeadsDoNotDivide {
            d_model: 30,
            n_heads: 4,
        }
        .into(),
        SeqError::TooManyWindowedHeads {
            windowed_heads: 9,
            n_heads: 4,
        }
        .into(),
    ];
    for e in &usage {
        assert_eq!(e.exit_code(), EXIT_USAGE, "{e}");
        assert_eq!(EXIT_USAGE, 2);
    }
    let failed: [CliError; 2] = [
        SeqError::Diverged {
            step: 3,
            loss: f64::NAN,
        }
        .into(),
        SeqError::Io("disk full".into()).into(),
    ];
    for e in &failed {
        assert_eq!(e.exit_code(), EXIT_FAILURE, "{e}");
    }
    assert_ne!(EXIT_FAILURE, EXIT_USAGE);
    // The message printed is the error's own, without a wrapper.
    assert_eq!(
        CliError::usage("--top-k must be at least 1").to_string(),
        "--top-k must be at least 1"
    );
}

#[test]
fn text_files_are_read_with_messages_that_name_the_problem() {
    let files = Files::new();
    let dir: &Path = &files.dir;
    let text = read_text_file(&dir.join("words.txt"), "word list").unwrap();
    assert!(text.starts_with("apple\n"));
    let e = read_text_file(&dir.join("binary.bin"), "corpus").unwrap_err();
    assert!(
        matches!(&e, SeqError::BadData { line: 2, message, .. } if message.contains("byte 9")),
        "{e}"
    );
    let e = read_text_file(&dir.join("nope.txt"), "corpus").unwrap_err();
    assert!(e.to_string().contains("the corpus `"), "{e}");
}

#[test]
fn the_examples_leave_through_the_shared_exit_helper() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for example in [
        "induction_head",
        "associative_recall",
        "tiny_gpt",
        "copying",
        "pig_latin",
    ] {
        let source = std::fs::read_to_string(root.join(format!("{example}.rs"))).unwrap();
        // The shared driver (`driver::drive`) ends every experiment through `or_exit`.
        assert!(
            source.contains("drive::<") || source.contains("or_exit("),
            "{example} does not use driver::drive or cli::or_exit"
        );
        assert!(
            !source.contains("process::exit(1)"),
            "{example} exits with 1 on its own"
        );
    }
    let driver = std::fs::read_to_string(root.join("common/driver.rs")).unwrap();
    assert!(driver.contains("or_exit(") && !driver.contains("process::exit(1)"));
}

#[test]
fn seed_flags_have_one_meaning_in_every_example() {
    fn parse<T: Parser>(example: &str, args: &[&str]) -> T {
        T::try_parse_from(std::iter::once(example).chain(args.iter().copied())).unwrap()
    }
    // No seed flag: seed 0 (the committed results); `--seeds S` is `--seed S`.
    let recall = |args: &[&str]| {
        parse::<RecallArgs>("induction_head", args)
            .options("induction_head")
            .seeds
    };
    let copying = |args: &[&str]| parse::<CopyingArgs>("copying", args).options().seeds;
    for seeds in [recall, copying] {
        assert_eq!(seeds(&[]), [0]);
        assert_eq!(seeds(&["--seed", "3"]), [3]);
        assert_eq!(seeds(&["--seeds", "3"]), [3]);
        assert_eq!(seeds(&["--seeds", "3,4"]), [3, 4]);
    }
    let pig_latin = |args: &[&str]| {
        parse::<PigLatinArgs>("pig_latin", args)
            .options()
            .unwrap()
            .seed
    };
    let tiny_gpt = |args: &[&str]| {
        let argv: Vec<&str> = std::iter::once("train")
            .chain(args.iter().copied())
            .collect();
        match parse::<TinyGptArgs>("tiny_gpt", &argv).mode {
            TinyGptMode::Train(t) => t.options().seed,
            TinyGptMode::Generate(_) => unreachable!(),
        }
    };
    for seed in [pig_latin, tiny_gpt] {
        assert_eq!(seed(&[]), 0);
        assert_eq!(seed(&["--seed", "3"]), 3);
        assert_eq!(seed(&["--seeds", "3"]), 3);
    }
}
