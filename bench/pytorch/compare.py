"""Side-by-side training speed: seqlayers vs PyTorch + mambapy, on this machine, in one run.

Install PyTorch first (CPU is enough):

    python3 -m pip install torch==2.15.0 mambapy==1.2.0 numpy

Then, from the repository root:

    python3 bench/pytorch/compare.py --out docs/results/train_speed.md

It builds and runs `cargo run --release --example train_speed -- --tsv` and
`bench/pytorch/train_speed.py` with the same thread count, one after the other, and writes a
markdown table with both timings, the ratio seqlayers / PyTorch, the issue's target ratio and
the CPU (model name and SIMD level). Rewriting an existing file keeps its hand-written profile
notes: everything from the `## Where the time goes` heading on.

`--malloc keep` runs both programs with glibc told to keep freed memory for reuse (the
`GLIBC_TUNABLES` below, what the experiment drivers set with `mallopt`), instead of glibc's
defaults, which give memory back to the kernel and fault it in again.
"""

import argparse
import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

LABELS = {
    "attention-nope": "attention (NoPE)",
    "attention-rope": "attention (RoPE)",
    "attention-learned": "attention (learned PE)",
    "hybrid": "hybrid Mamba→attention",
    "mamba": "Mamba",
    "mamba-sequential": "Mamba, sequential scan",
    "lstm": "LSTM",
}
# The heading of the hand-written profile notes that a rerun keeps (see `kept_notes`).
NOTES_HEADING = "## Where the time goes"
# Targets of the speed issue (round 3, the recall-suite targets that still stand): seqlayers
# time ≤ ratio × PyTorch time.
# `--malloc keep`: glibc keeps freed memory (no trimming; only blocks over 32 MiB get their own
# map), for both programs alike.
MALLOC_KEEP = "glibc.malloc.trim_threshold=2147483647:glibc.malloc.mmap_threshold=33554432"
TARGETS = {
    "attention-nope": 1.0, "attention-rope": 1.0, "attention-learned": 1.0,
    "mamba": 0.2, "lstm": 1.0,
}


def cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_simd():
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return "unknown"
    if "avx512f" in flags:
        return "AVX-512"
    if "avx2" in flags and "fma" in flags:
        return "AVX2+FMA"
    return "SSE2"


def parse(text):
    """`# header` lines, and `key<TAB>int…<TAB>value` rows keyed by (key, ints…)."""
    header, rows = [], {}
    for line in text.splitlines():
        if line.startswith("#"):
            header.append(line.lstrip("# ").strip())
        elif line.strip():
            *key, value = line.split("\t")
            rows[(key[0], *map(int, key[1:]))] = float(value)
    return header, rows


def run(cmd, env=None):
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    out = subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.PIPE, text=True)
    return out.stdout


def environments(args):
    """Exits with the install line unless `args.python` has torch and mambapy; returns the
    environments of the PyTorch and the seqlayers runs (malloc setting, thread count)."""
    try:
        run([args.python, "-c", "import torch, mambapy"])
    except subprocess.CalledProcessError:
        sys.exit("PyTorch or mambapy is missing for " + args.python +
                 ": python3 -m pip install torch==2.15.0 mambapy==1.2.0 numpy")
    torch_env = dict(os.environ)
    if args.malloc == "keep":
        torch_env["GLIBC_TUNABLES"] = MALLOC_KEEP
    return torch_env, dict(torch_env, RAYON_NUM_THREADS=str(args.threads))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="timed steps per case")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="threads for both (default: all cores)")
    parser.add_argument("--python", default=sys.executable,
                        help="the Python that has torch and mambapy")
    parser.add_argument("--out", type=Path, default=None, help="markdown file to write")
    parser.add_argument("--malloc", choices=["default", "keep"], default="default",
                        help="glibc malloc settings for both programs: its defaults, or keep "
                             "freed memory for reuse (GLIBC_TUNABLES=" + MALLOC_KEEP + ")")
    args = parser.parse_args()

    torch_env, env = environments(args)
    run(["cargo", "build", "--release", "--example", "train_speed", "--example", "decode_speed"])
    started = datetime.datetime.now(datetime.timezone.utc)
    ours_header, ours = parse(run(["cargo", "run", "--release", "--quiet", "--example",
                                   "train_speed", "--", "--tsv", "--steps", str(args.steps)],
                                  env=env))
    torch_header, theirs = parse(run([args.python, str(HERE / "train_speed.py"), "--steps",
                                      str(args.steps), "--threads", str(args.threads)],
                                     env=torch_env))
    _, ours_decode = parse(run(["cargo", "run", "--release", "--quiet", "--example",
                                "decode_speed", "--", "--tsv"], env=env))
    _, theirs_decode = parse(run([args.python, str(HERE / "decode_speed.py"), "--threads",
                                  str(args.threads)], env=torch_env))
    minutes = (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds() / 60

    lines = [
        "# Training speed, side by side with PyTorch + mambapy",
        "",
        f"CPU: {cpu_name()}, {os.cpu_count()} cores, {cpu_simd()}; {args.threads} threads for "
        f"both; glibc malloc: "
        + ("keeps freed memory (`GLIBC_TUNABLES=" + MALLOC_KEEP + "`) for both"
           if args.malloc == "keep" else "defaults for both")
        + f". Run {started:%Y-%m-%d %H:%M} UTC, {minutes:.1f} min for both halves.",
        "",
        f"- seqlayers: {'; '.join(ours_header)}",
        f"- PyTorch: {'; '.join(torch_header)}",
        "",
        "Command: `python3 bench/pytorch/compare.py --steps "
        f"{args.steps}{' --malloc keep' if args.malloc == 'keep' else ''} --out "
        f"{args.out.as_posix() if args.out else '…'}` (both programs one after the other in "
        "one invocation). One optimizer step (forward + backward + Adam) of the recall "
        f"classifier, K = 16, L = 64, batch 64, 2 blocks; mean of {args.steps} steps after 5 "
        "warm-up steps. Ratio = seqlayers / PyTorch (below 1: we are faster).",
        "",
        "| model | d | PyTorch ms | seqlayers ms | ratio | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for (key, d), ms in ours.items():
        torch_ms = theirs.get((key, d))
        target = TARGETS.get(key)
        ratio = ms / torch_ms if torch_ms else None
        lines.append("| {} | {} | {} | {:.2f} | {} | {} | {} |".format(
            LABELS.get(key, key), d,
            f"{torch_ms:.2f}" if torch_ms else "–",
            ms,
            f"{ratio:.2f}×" if ratio else "–",
            f"≤ {target}×" if target else "–",
            ("yes" if ratio <= target else "no") if ratio and target else "–",
        ))
    lines += [
        "",
        "## Decoding",
        "",
        "Generated tokens per second, one-token steps from the cached state (KV caches; Mamba's "
        "conv window + SSM state via mambapy's `MambaBlock.step`), 2 blocks, d = 64, vocabulary "
        "64, greedy arg-max after every step, 128 tokens after a one-token prompt "
        "(`cargo run --release --example decode_speed`, `bench/pytorch/decode_speed.py`). "
        "Speed-up = seqlayers / PyTorch tokens/s (above 1: we are faster).",
        "",
        "| model | d | batch | PyTorch tokens/s | seqlayers tokens/s | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for (key, d, batch), tps in ours_decode.items():
        other = theirs_decode.get((key, d, batch))
        lines.append("| {} | {} | {} | {} | {:.0f} | {} |".format(
            LABELS.get(key, key), d, batch, f"{other:.0f}" if other else "–", tps,
            f"{tps / other:.2f}×" if other else "–"))
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text + kept_notes(args.out))


def kept_notes(path):
    """The hand-written part of an existing output file (from its `## Where the time goes`
    heading on), so that regenerating the tables keeps the profile notes."""
    try:
        old = path.read_text()
    except OSError:
        return ""
    at = old.find("\n" + NOTES_HEADING)
    return "\n" + old[at + 1:] if at >= 0 else ""


if __name__ == "__main__":
    main()
