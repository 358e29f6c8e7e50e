"""PyTorch + mambapy counterpart of `cargo run --release --example model_speed`.

Install (CPU is enough; the PyPI wheel also pulls CUDA libraries it does not need here):

    python3 -m pip install torch==2.15.0 mambapy==1.2.0 numpy

Times one optimizer step (forward + backward + optimizer update) of real-size models, with the
same shapes and parameter counts as the Rust example (its module docs define each case):

- `gpt-96`, `gpt-384`: a GPT, pre-LayerNorm, learned positions, 3 blocks of causal
  multi-head attention (4 heads, Q/K/V and output projections with biases) and a GELU MLP
  (4 D), a final LayerNorm and the head tied to the token embedding; vocabulary 76, block 64,
  batch 32; cross-entropy at every position; Adam (lr 1e-3).
- `encoder-384`: a BERT-style post-norm encoder at the MiniLM size (vocabulary 30522, 6 layers,
  384 wide, 12 heads, MLP 1536, learned positions and token types, embedding LayerNorm), mean
  pooling over the tokens and a linear 2-class head; sequence 64, batch 32; AdamW (lr 1e-4,
  weight decay 0.01). No dropout (the Rust side trains with dropout 0 too).
- `mamba-384`: a Mamba language model, 3 blocks `x + mamba(rmsnorm(x))` (mambapy's
  `ResidualBlock`: d_state 16, expand 2, d_conv 4, parallel scan), a final RMSNorm and the tied
  head; vocabulary 76, block 64, batch 32; Adam (lr 1e-3).

Prints `# torch …` and one line per case, `key<TAB>ms_per_step<TAB>peak_rss_mib<TAB>params`, for
`bench/pytorch/compare_models.py`. Run one case per process (`--only`) to get its own peak
memory.

    python3 bench/pytorch/model_speed.py --only gpt-96 --steps 10 --threads 2
"""

import argparse
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

try:
    from mambapy.mamba import MambaConfig, ResidualBlock, RMSNorm
except ImportError:  # pragma: no cover - reported to the caller
    ResidualBlock = None

BATCH, LENGTH = 32, 64
CASES = ["gpt-96", "gpt-384", "encoder-384", "mamba-384"]


class CausalSelfAttention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.out = nn.Linear(d, d)

    def forward(self, x, causal=True, padding=None):
        b, length, d = x.shape
        h = self.heads

        def split(t):  # [B, L, D] -> [B, H, L, D/H]
            return t.view(b, length, h, d // h).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        mask = None if padding is None else padding[:, None, None, :]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
        return self.out(y.transpose(1, 2).reshape(b, length, d))  # [B, L, D]


class Mlp(nn.Module):
    def __init__(self, d, hidden):
        super().__init__()
        self.up, self.down = nn.Linear(d, hidden), nn.Linear(hidden, d)

    def forward(self, x):
        return self.down(F.gelu(self.up(x)))  # exact (erf) GELU


class GptBlock(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(d), CausalSelfAttention(d, heads)
        self.norm2, self.mlp = nn.LayerNorm(d), Mlp(d, 4 * d)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Gpt(nn.Module):
    def __init__(self, d, vocab=76, layers=3, heads=4):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.position = nn.Parameter(torch.randn(LENGTH, d) * 0.02)
        self.blocks = nn.ModuleList(GptBlock(d, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(d)

    def forward(self, ids):
        x = self.embed(ids) + self.position[: ids.shape[1]]  # [B, L, D]
        for block in self.blocks:
            x = block(x)
        return self.norm(x) @ self.embed.weight.T  # [B, L, V], tied head


class EncoderBlock(nn.Module):
    """Post-norm: x = norm(x + attn(x)); x = norm(x + mlp(x))."""

    def __init__(self, d, heads, hidden):
        super().__init__()
        self.attn, self.norm1 = CausalSelfAttention(d, heads), nn.LayerNorm(d, eps=1e-12)
        self.mlp, self.norm2 = Mlp(d, hidden), nn.LayerNorm(d, eps=1e-12)

    def forward(self, x, padding):
        x = self.norm1(x + self.attn(x, causal=False, padding=padding))
        return self.norm2(x + self.mlp(x))


class Encoder(nn.Module):
    def __init__(self, vocab=30522, d=384, layers=6, heads=12, hidden=1536, positions=512):
        super().__init__()
        self.word = nn.Embedding(vocab, d)
        self.position = nn.Embedding(positions, d)
        self.token_type = nn.Embedding(2, d)
        self.norm = nn.LayerNorm(d, eps=1e-12)
        self.blocks = nn.ModuleList(EncoderBlock(d, heads, hidden) for _ in range(layers))
        self.head = nn.Linear(d, 2)

    def forward(self, ids):
        length = ids.shape[1]
        keep = ids != 0  # [B, L], False at pads (none in the benchmark batch)
        x = self.word(ids) + self.position.weight[:length] + self.token_type.weight[0]
        x = self.norm(x)
        for block in self.blocks:
            x = block(x, keep)
        pooled = (x * keep[..., None]).sum(1) / keep.sum(1, keepdim=True)  # [B, D]
        return self.head(pooled)  # [B, 2]


class MambaLm(nn.Module):
    def __init__(self, d=384, vocab=76, layers=3):
        super().__init__()
        config = MambaConfig(d_model=d, n_layers=layers, d_state=16, expand_factor=2,
                             d_conv=4, pscan=True)
        self.embed = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(ResidualBlock(config) for _ in range(layers))
        self.norm = RMSNorm(d)

    def forward(self, ids):
        x = self.embed(ids)
        for block in self.blocks:
            x = block(x)
        return self.norm(x) @ self.embed.weight.T


def build(case):
    """(model, optimizer, step) of a case."""
    gen = torch.Generator().manual_seed(0)
    if case.startswith("gpt-"):
        model = Gpt(int(case.split("-")[1]))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        vocab, classify = 76, False
    elif case == "encoder-384":
        model = Encoder()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
        vocab, classify = 30522, True
    elif case == "mamba-384":
        if ResidualBlock is None:
            raise SystemExit("mambapy is missing: python3 -m pip install mambapy==1.2.0")
        model = MambaLm()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        vocab, classify = 76, False
    else:
        raise SystemExit(f"unknown case {case}; use one of {', '.join(CASES)}")
    model.train()
    low = 1000 if classify else 0  # real word pieces, no [PAD] (id 0)
    ids = torch.randint(low, vocab, (BATCH, LENGTH), generator=gen)
    if classify:
        labels = torch.randint(0, 2, (BATCH,), generator=gen)
    else:
        labels = torch.randint(0, vocab, (BATCH, LENGTH), generator=gen)

    def step():
        opt.zero_grad(set_to_none=True)
        logits = model(ids)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        loss.backward()
        opt.step()

    return model, step


def measure(case, steps, warmup):
    """(ms per step, parameters) of a case."""
    model, step = build(case)
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    params = sum(p.numel() for p in model.parameters())
    return 1000.0 * (time.perf_counter() - start) / steps, params


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per case")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: all cores)")
    parser.add_argument("--only", default=None, help="the case to run (default: all)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"cpu capability {torch.backends.cpu.get_cpu_capability()}", flush=True)
    for case in CASES:
        if args.only and args.only != case:
            continue
        ms, params = measure(case, args.steps, args.warmup)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB
        print(f"{case}\t{ms:.3f}\t{peak:.0f}\t{params}", flush=True)


if __name__ == "__main__":
    main()
