"""PyTorch + mambapy counterpart of `cargo run --release --example train_speed`.

Install (CPU is enough; the PyPI wheel also pulls CUDA libraries it does not need here):

    python3 -m pip install torch==2.15.0 mambapy==1.2.0 numpy

Times one optimizer step (forward + backward + Adam) of the same recall classifiers as the Rust
example, with the same shapes: K = 16 tokens, L = 64, batch 64, two residual blocks
`x + mixer(rmsnorm(x))`, a fixed (untrained) token embedding of width d, a final RMSNorm and a
linear head on the last position, cross-entropy, Adam (lr 1e-3).

Mixers: single-head causal attention (fused QKV and output projections with biases; NoPE,
RoPE, or a learned position table added to the input), mambapy's `MambaBlock` (d_state 16,
expand 2, d_conv 4, parallel scan), the hybrid Mamba → attention, and `nn.LSTM` (one layer per
block). Prints one line per case, `model<TAB>d<TAB>ms_per_step`, for `bench/pytorch/compare.py`.

    python3 bench/pytorch/train_speed.py --steps 40 --threads 2
"""

import argparse
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

try:
    from mambapy.mamba import MambaBlock, MambaConfig
except ImportError:  # pragma: no cover - reported to the caller
    MambaBlock = None

K, L, BATCH, LAYERS = 16, 64, 64, 2
CASES = [
    ("attention-nope", 8), ("attention-rope", 8), ("attention-learned", 8),
    ("hybrid", 8), ("mamba", 8), ("lstm", 8),
    ("attention-nope", 64), ("attention-rope", 64), ("attention-learned", 64),
    ("hybrid", 64), ("mamba", 64), ("lstm", 64),
]


def rope(x):
    """Rotary positions on the last axis of x [B, L, d] (pairs (2i, 2i+1), base 10000)."""
    _, length, d = x.shape
    half = d // 2
    freq = 10000.0 ** (-torch.arange(half, dtype=x.dtype) * 2 / d)  # [d/2]
    angle = torch.arange(length, dtype=x.dtype)[:, None] * freq  # [L, d/2]
    cos, sin = angle.cos(), angle.sin()
    x1, x2 = x[..., 0::2], x[..., 1::2]  # [B, L, d/2]
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)  # [B, L, d/2, 2]
    return out.flatten(-2)


class Attention(nn.Module):
    def __init__(self, d, rotary):
        super().__init__()
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.rotary = rotary

    def forward(self, x):  # [B, L, d]
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # [B, L, d] each
        if self.rotary:
            q, k = rope(q), rope(k)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # [B, L, d]
        return self.out(y)


class Lstm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.lstm = nn.LSTM(d, d, batch_first=True)

    def forward(self, x):  # [B, L, d]
        return self.lstm(x)[0]


class Classifier(nn.Module):
    def __init__(self, model, d):
        super().__init__()
        self.embedding = nn.Embedding(K, d)
        self.embedding.weight.requires_grad_(False)
        self.positions = nn.Embedding(L, d) if model == "attention-learned" else None
        kinds = {
            "attention-nope": ["attention"] * LAYERS,
            "attention-rope": ["rope"] * LAYERS,
            "attention-learned": ["attention"] * LAYERS,
            "hybrid": ["mamba", "attention"],
            "mamba": ["mamba"] * LAYERS,
            "lstm": ["lstm"] * LAYERS,
        }[model]
        self.norms = nn.ModuleList(nn.RMSNorm(d, eps=1e-5) for _ in kinds)
        self.mixers = nn.ModuleList(self.mixer(kind, d) for kind in kinds)
        self.final_norm = nn.RMSNorm(d, eps=1e-5)
        self.head = nn.Linear(d, K)

    @staticmethod
    def mixer(kind, d):
        if kind == "mamba":
            if MambaBlock is None:
                sys.exit("mambapy is missing: python3 -m pip install mambapy==1.2.0")
            return MambaBlock(MambaConfig(d_model=d, n_layers=1, d_state=16, expand_factor=2,
                                          d_conv=4, pscan=True))
        if kind == "lstm":
            return Lstm(d)
        return Attention(d, rotary=kind == "rope")

    def forward(self, tokens):  # [B, L]
        x = self.embedding(tokens)  # [B, L, d]
        if self.positions is not None:
            x = x + self.positions.weight[: tokens.shape[1]]
        for norm, mixer in zip(self.norms, self.mixers):
            x = x + mixer(norm(x))
        return self.head(self.final_norm(x[:, -1]))  # [B, K]


def measure(model, d, steps, warmup=5):
    torch.manual_seed(0)
    net = Classifier(model, d)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-3)

    def step():
        tokens = torch.randint(0, K, (BATCH, L))
        labels = torch.randint(0, K, (BATCH,))
        loss = F.cross_entropy(net(tokens), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return 1000.0 * (time.perf_counter() - start) / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="timed steps per case")
    parser.add_argument("--threads", type=int, default=0,
                        help="intra-op threads (0: all cores)")
    parser.add_argument("--only", default=None, help="cases whose model name contains this")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"cpu capability {torch.backends.cpu.get_cpu_capability()}", flush=True)
    for model, d in CASES:
        if args.only and args.only not in model:
            continue
        ms = measure(model, d, args.steps)
        print(f"{model}\t{d}\t{ms:.3f}", flush=True)


if __name__ == "__main__":
    main()
