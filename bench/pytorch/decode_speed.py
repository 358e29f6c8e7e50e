"""PyTorch + mambapy counterpart of `cargo run --release --example decode_speed`.

Install: python3 -m pip install torch==2.15.0 mambapy==1.2.0 numpy

Generated tokens per second for one-token steps from a cached state, batch 1 and 64: a 2-block
language model of width 64 (vocabulary 64, blocks `x + mixer(rmsnorm(x))`, final RMSNorm,
linear head), greedy arg-max after every step, a one-token prompt. Mixers: 4-head causal
attention with a KV cache (keys/values concatenated step by step, NoPE) and mambapy's
`MambaBlock.step` (conv window + SSM state). Prints `model<TAB>d<TAB>batch<TAB>tokens_per_s`.

    python3 bench/pytorch/decode_speed.py --tokens 128 --threads 2
"""

import argparse
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

try:
    from mambapy.mamba import MambaBlock, MambaConfig
except ImportError:  # pragma: no cover
    MambaBlock = None

D, VOCAB, HEADS = 64, 64, 4


class CachedAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(D, 3 * D)
        self.out = nn.Linear(D, D)

    def init_cache(self, batch):
        empty = torch.zeros(batch, HEADS, 0, D // HEADS)
        return (empty, empty)

    def step(self, x, cache):  # x [B, D]
        b = x.shape[0]
        q, k, v = self.qkv(x).view(b, 3, HEADS, D // HEADS).unbind(1)  # [B, H, dh] each
        keys = torch.cat([cache[0], k.unsqueeze(2)], dim=2)  # [B, H, T, dh]
        values = torch.cat([cache[1], v.unsqueeze(2)], dim=2)  # [B, H, T, dh]
        y = F.scaled_dot_product_attention(q.unsqueeze(2), keys, values)  # [B, H, 1, dh]
        return self.out(y.reshape(b, D)), (keys, values)


class Mamba(nn.Module):
    def __init__(self):
        super().__init__()
        if MambaBlock is None:
            sys.exit("mambapy is missing: python3 -m pip install mambapy==1.2.0")
        self.config = MambaConfig(d_model=D, n_layers=1, d_state=16, expand_factor=2, d_conv=4)
        self.block = MambaBlock(self.config)

    def init_cache(self, batch):
        inner = self.config.expand_factor * D
        return (torch.zeros(batch, inner, self.config.d_state),
                torch.zeros(batch, inner, self.config.d_conv - 1))

    def step(self, x, cache):
        return self.block.step(x, cache)


class LanguageModel(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, D)
        mixer = {"attention-nope": CachedAttention, "mamba": Mamba}[model]
        self.norms = nn.ModuleList(nn.RMSNorm(D, eps=1e-5) for _ in range(2))
        self.mixers = nn.ModuleList(mixer() for _ in range(2))
        self.final_norm = nn.RMSNorm(D, eps=1e-5)
        self.head = nn.Linear(D, VOCAB)

    def step(self, token, caches):  # token [B]
        x = self.embedding(token)  # [B, D]
        new = []
        for norm, mixer, cache in zip(self.norms, self.mixers, caches):
            y, cache = mixer.step(norm(x), cache)
            x = x + y
            new.append(cache)
        return self.head(self.final_norm(x)), new  # [B, V]

    def generate(self, batch, tokens):
        token = torch.arange(batch) % VOCAB
        caches = [m.init_cache(batch) for m in self.mixers]
        out = []
        for _ in range(tokens):
            logits, caches = self.step(token, caches)
            token = logits.argmax(-1)
            out.append(token)
        return torch.stack(out, 1)


def tokens_per_second(model, batch, tokens):
    torch.manual_seed(0)
    lm = LanguageModel(model).eval()
    with torch.no_grad():
        lm.generate(batch, 4)
        start = time.perf_counter()
        out = lm.generate(batch, tokens)
        seconds = time.perf_counter() - start
    return out.numel() / seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: all)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"# torch {torch.__version__} decoding, {torch.get_num_threads()} threads", flush=True)
    for model in ["attention-nope", "mamba"]:
        for batch in [1, 64]:
            tps = tokens_per_second(model, batch, args.tokens)
            print(f"{model}\t{D}\t{batch}\t{tps:.1f}", flush=True)


if __name__ == "__main__":
    main()
