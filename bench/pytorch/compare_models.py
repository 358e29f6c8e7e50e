"""Side-by-side training speed of real-size models: seqlayers vs PyTorch (+ mambapy), on this
machine, in one run.

Install PyTorch first (CPU is enough):

    python3 -m pip install torch==2.15.0 mambapy==1.2.0 numpy

Then, from the repository root:

    python3 bench/pytorch/compare_models.py --out docs/results/model_speed.md

For each case (a GPT at d = 96 and d = 384, a MiniLM-size encoder, a Mamba LM at d = 384; the
models are defined in `examples/model_speed.rs`) it runs
`cargo run --release --example model_speed -- --tsv --only CASE` and
`bench/pytorch/model_speed.py --only CASE`, each in its own process (so each reports its own
peak memory), with the same thread count, one after the other. It writes a markdown table with
both timings, the ratio seqlayers / PyTorch, tokens per second, the achieved GFLOP/s of each
against this CPU's FMA peak, both peak memories, and the issue's targets. A rerun keeps an
existing file's hand-written notes (everything from `## Where the time goes` on).

FLOPs per step are counted the same way for both programs, as 3 × the forward pass's
multiply-adds × 2 (the backward pass costs about twice the forward): the matrix products of
every projection, both attention products over the full L × L (causal masking is not
subtracted), the tied head, and for Mamba its scan's ~6 E N per token.
"""

import argparse
import datetime
import os
import sys
from pathlib import Path

from compare import cpu_name, cpu_simd, environments, kept_notes, run

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

BATCH, LENGTH = 32, 64
CASES = ["gpt-96", "gpt-384", "encoder-384", "mamba-384"]
LABELS = {
    "gpt-96": "GPT, d = 96 (3 layers)",
    "gpt-384": "GPT, d = 384 (3 layers)",
    "encoder-384": "encoder, MiniLM size (6 × 384)",
    "mamba-384": "Mamba LM, d = 384 (3 layers)",
}
# Targets of the speed issue: seqlayers time ≤ ratio × PyTorch time.
TARGETS = {"gpt-96": 1.0, "gpt-384": 1.0, "encoder-384": 1.0}


def forward_flops_per_token(case):
    """Forward FLOPs (2 per multiply-add) per token of a case."""
    length = LENGTH
    if case.startswith("gpt-"):
        d, layers, vocab = int(case.split("-")[1]), 3, 76
        per_layer = 2 * (4 * d * d + 8 * d * d) + 2 * 2 * length * d
        return layers * per_layer + 2 * d * vocab
    if case == "encoder-384":
        d, layers, hidden = 384, 6, 1536
        per_layer = 2 * (4 * d * d + 2 * d * hidden) + 2 * 2 * length * d
        return layers * per_layer
    if case == "mamba-384":
        d, layers, vocab = 384, 3, 76
        e, n, r, k = 2 * d, 16, (d + 15) // 16, 4
        per_layer = 2 * (d * 2 * e + e * (r + 2 * n) + r * e + e * d + k * e) + 6 * e * n
        return layers * per_layer + 2 * d * vocab
    raise ValueError(case)


def step_gflop(case):
    return 3 * forward_flops_per_token(case) * BATCH * LENGTH / 1e9


def fma_peak_gflops(threads):
    """Single-precision FMA peak of `threads` cores at the nominal clock: 2 FMA units per core,
    each 16 lanes (AVX-512) or 8 lanes (AVX2), 2 FLOPs per lane and cycle. AMD's Zen 4 (CPU
    family 25 with AVX-512) runs a 512-bit FMA on 256-bit units, two per cycle: 8 lanes each.
    Returns (peak, GHz, datapath note); `None`s without a clock in /proc/cpuinfo."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None, None, ""
    mhz = [float(line.split(":")[1]) for line in text.splitlines() if line.startswith("cpu MHz")]
    if not mhz:
        return None, None, ""
    field = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        field.setdefault(key.strip(), value.strip())
    simd = cpu_simd()
    lanes = {"AVX-512": 16, "AVX2+FMA": 8}.get(simd, 4)
    note = ""
    if field.get("vendor_id") == "AuthenticAMD" and field.get("cpu family") == "25" \
            and simd == "AVX-512":
        lanes, note = 8, " (AMD Zen 4: AVX-512 on 256-bit FMA units, so 8 lanes per unit)"
    ghz = max(mhz) / 1000
    return threads * ghz * 2 * lanes * 2, ghz, note


def parse(text):
    """`# header` lines, and `key<TAB>ms<TAB>peak_mib<TAB>params` rows."""
    header = [line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("#")]
    rows = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            key, ms, peak, params = line.split("\t")
            rows[key] = (float(ms), float(peak), int(params))
    return header, rows


def median_rows(runs):
    """Per key, the row with the median step time over `runs` (dicts from `parse`)."""
    out = {}
    for key in runs[0]:
        rows = sorted((r[key] for r in runs if key in r), key=lambda row: row[0])
        out[key] = rows[(len(rows) - 1) // 2]
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per case")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per case")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="threads for both (default: all cores)")
    parser.add_argument("--only", default=None, help="one case (default: all)")
    parser.add_argument("--python", default=sys.executable,
                        help="the Python that has torch and mambapy")
    parser.add_argument("--out", type=Path, default=None, help="markdown file to write")
    parser.add_argument("--malloc", choices=["default", "keep"], default="default",
                        help="glibc malloc settings for both programs (see compare.py)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run both programs this many times per case, alternating, and "
                             "keep each one's median step time (for a machine whose speed "
                             "varies with its neighbours' load)")
    args = parser.parse_args()

    torch_env, env = environments(args)
    run(["cargo", "build", "--release", "--example", "model_speed"])
    steps = ["--steps", str(args.steps), "--warmup", str(args.warmup)]
    started = datetime.datetime.now(datetime.timezone.utc)
    ours, theirs, ours_header, torch_header = {}, {}, [], []
    for case in CASES:
        if args.only and args.only != case:
            continue
        mine, torch_runs = [], []
        for _ in range(max(args.rounds, 1)):
            header, rows = parse(run(["cargo", "run", "--release", "--quiet", "--example",
                                      "model_speed", "--", "--tsv", "--only", case, *steps],
                                     env=env))
            mine.append(rows)
            ours_header = ours_header or header
            header, rows = parse(run([args.python, str(HERE / "model_speed.py"), "--only", case,
                                      "--threads", str(args.threads), *steps], env=torch_env))
            torch_runs.append(rows)
            torch_header = torch_header or header
        ours.update(median_rows(mine))
        theirs.update(median_rows(torch_runs))
        for key in mine[0]:
            spread = [(r[key][0], t[key][0]) for r, t in zip(mine, torch_runs) if key in t]
            print(f"{key}: (seqlayers, PyTorch) ms per round: "
                  + ", ".join(f"({a:.1f}, {b:.1f})" for a, b in spread), file=sys.stderr)
    minutes = (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds() / 60
    peak, ghz, datapath = fma_peak_gflops(args.threads)

    lines = [
        "# Training speed of real-size models, side by side with PyTorch",
        "",
        f"CPU: {cpu_name()}, {os.cpu_count()} cores, {cpu_simd()}; {args.threads} threads for "
        "both; glibc malloc: "
        + ("keeps freed memory for both" if args.malloc == "keep" else "defaults for both")
        + f". Run {started:%Y-%m-%d %H:%M} UTC, {minutes:.1f} min for both halves.",
        "",
        f"- seqlayers: {'; '.join(ours_header)}",
        f"- PyTorch: {'; '.join(torch_header)}",
        "",
        f"Command: `python3 bench/pytorch/compare_models.py --steps {args.steps} --warmup "
        f"{args.warmup}{' --malloc keep' if args.malloc == 'keep' else ''}"
        f"{f' --rounds {args.rounds}' if args.rounds > 1 else ''} --out "
        f"{args.out.as_posix() if args.out else '…'}` (each case in its own process, both "
        "programs one after the other). One training step (forward + backward + optimizer "
        f"update), batch {BATCH} × {LENGTH} tokens; mean of {args.steps} steps after "
        f"{args.warmup} warm-up steps"
        + (f", the median of {args.rounds} such runs of each program, alternating"
           if args.rounds > 1 else "")
        + ". Ratio = seqlayers / PyTorch (below 1: we are faster). "
        "GFLOP per step: 3 × the forward matrix products (see the script). "
        + (f"FMA peak: {peak:.0f} GFLOP/s ({args.threads} cores × {ghz:.2f} GHz nominal × 2 "
           "FMA units × the vector's f32 lanes × 2" + datapath + "; at the nominal clock, which "
           "the cores may exceed under load: the clock under load is not visible from inside "
           "the VM)." if peak else
           "No clock in /proc/cpuinfo: no peak."),
        "",
        "| model | parameters | GFLOP/step | PyTorch ms | seqlayers ms | ratio | target | PyTorch tok/s | "
        "seqlayers tok/s | PyTorch % peak | seqlayers % peak | PyTorch peak MiB | "
        "seqlayers peak MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    tokens = BATCH * LENGTH
    for case in CASES:
        if case not in ours:
            continue
        ms, mib, params = ours[case]
        torch_ms, torch_mib, torch_params = theirs.get(case, (None, None, None))
        # The same model on both sides: equal parameter counts, or both are shown.
        count = (f"{params:,}" if torch_params in (None, params)
                 else f"{params:,} (PyTorch {torch_params:,})")
        gflop = step_gflop(case)
        ratio = ms / torch_ms if torch_ms else None
        target = TARGETS.get(case)

        def pct_peak(t):
            return f"{100 * gflop / (t / 1e3) / peak:.0f}%" if peak and t else "–"

        lines.append("| {} | {} | {:.1f} | {} | {:.1f} | {} | {} | {} | {:.0f} | {} | {} | {} | {:.0f} |"
                     .format(LABELS[case], count, gflop,
                             f"{torch_ms:.1f}" if torch_ms else "–", ms,
                             f"{ratio:.2f}×" if ratio else "–",
                             f"≤ {target}×" if target else "–",
                             f"{tokens / (torch_ms / 1e3):.0f}" if torch_ms else "–",
                             tokens / (ms / 1e3),
                             pct_peak(torch_ms), pct_peak(ms),
                             f"{torch_mib:.0f}" if torch_mib else "–", mib))
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text + kept_notes(args.out))


if __name__ == "__main__":
    main()
