"""PyTorch's sgemm at the nine products of one d = 384 GPT layer, for `cargo bench --bench gemm`
(matrixmultiply and the `gemm` crate at the same shapes) run beside it on the same machine:

    cargo bench --bench gemm && python3 bench/pytorch/gemm.py

The shapes, operand layouts (a transposed operand is a strided view, as in the Rust bench), the
warm-up and the repetition count follow `benches/gemm.rs`. Prints one markdown row per product:
PyTorch's GFLOP/s on `--threads` threads (default: every core), and the GFLOP/s over all nine.
"""

import argparse
import os
import time

import torch

# (label, m, k, n, a transposed, b transposed): C [m, n] = A [m, k] · B [k, n].
SHAPES = [
    ("qkv/out forward  x·W", 2048, 384, 384, False, False),
    ("qkv/out ∂x = ∂y·Wᵀ", 2048, 384, 384, False, True),
    ("qkv/out ∂W = xᵀ·∂y", 384, 2048, 384, True, False),
    ("mlp up forward", 2048, 384, 1536, False, False),
    ("mlp up ∂x", 2048, 1536, 384, False, True),
    ("mlp up ∂W", 384, 2048, 1536, True, False),
    ("mlp down forward", 2048, 1536, 384, False, False),
    ("mlp down ∂x", 2048, 384, 1536, False, True),
    ("mlp down ∂W", 1536, 2048, 384, True, False),
]


def operand(rows, cols, transposed, modulus):
    """A dense [rows, cols] operand with the Rust bench's values, stored row-major or as the
    transpose of a row-major [cols, rows] matrix."""
    n = rows * cols
    values = ((torch.arange(n) % modulus).float() - modulus // 2) / modulus
    if transposed:
        return values.reshape(cols, rows).t()
    return values.reshape(rows, cols)


def seconds(f, reps):
    f()  # warm-up
    start = time.perf_counter()
    for _ in range(reps):
        f()
    return (time.perf_counter() - start) / reps


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# torch {torch.__version__}, {args.threads} threads, "
          f"cpu capability {torch.backends.cpu.get_cpu_capability()}")
    print("| product | m × k × n | PyTorch GFLOP/s |")
    print("|---|---|---|")
    total_t, total_f = 0.0, 0.0
    for label, m, k, n, a_t, b_t in SHAPES:
        a = operand(m, k, a_t, 97)
        b = operand(k, n, b_t, 89)
        c = torch.empty(m, n)
        reps = int(min(max(2e10 / (2.0 * m * k * n), 3.0), 50.0))
        t = seconds(lambda: torch.mm(a, b, out=c), reps)
        f = 2.0 * m * k * n
        print(f"| {label} | {m} × {k} × {n} | {f / t / 1e9:.1f} |")
        total_t += t
        total_f += f
    print(f"| all nine (one GPT layer's products) | | {total_f / total_t / 1e9:.1f} |")


if __name__ == "__main__":
    main()
