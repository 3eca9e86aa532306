"""train_torch.py - the student model of src/core in plain PyTorch, as a
reference for bench/train: the same architecture, loaded with the weights
and batches that train_bench wrote to DIR.

    train_torch.py info                PyTorch's version and the BLAS it
                                       loaded (Debian's libblas.so.3 is an
                                       alternative: OpenBLAS or the slow
                                       reference BLAS)
    train_torch.py check DIR           the C results on the check batch
                                       against PyTorch's: prints
                                       "max|dlogp| max|dloss| max-grad-rel-err"
    train_torch.py speed DIR THREADS   training steps on the speed batch:
                                       prints "tokens/s"
    train_torch.py pretrained MODE THREADS
                                       fine-tuning SmolLM2-135M's shape
                                       (random weights) on random ids, MODE
                                       full or lora (bench/pretrained):
                                       prints "s/step tokens/s peak-RSS-kB"

The model (see src/core/model.h): token embedding; per layer pre-RMSNorm,
q/k/v projections, rotary positions ("rotate half" layout), attention with
the prefix-LM mask, o_proj, residual; pre-RMSNorm, SwiGLU MLP, residual;
final RMSNorm; logits = logit_scale * h @ embed_tokens^T (tied).  Module
and parameter names are Hugging Face Llama's, as in the C tensor table.
Attention is F.scaled_dot_product_attention where PyTorch has it (2.0 and
later); Debian 12's 1.13 has not, and does the products and the masked
softmax one by one.
"""
import math
import os
import resource
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def read_config(directory):
    config = {}
    with open(os.path.join(directory, "config.txt")) as f:
        for line in f:
            key, value = line.split()
            config[key] = float(value) if "." in value or "e" in value else int(value)
    return config


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotary_tables(seq_len, head_dim, theta):
    """cos and sin [seq_len, head_dim], each half repeated ("rotate half").
    Angles in float64, as the C tables."""
    half = head_dim // 2
    inv_freq = theta ** (-2.0 * torch.arange(half, dtype=torch.float64) / head_dim)
    angles = torch.arange(seq_len, dtype=torch.float64)[:, None] * inv_freq[None, :]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().float(), angles.sin().float()


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.n_heads = c["n_heads"]
        self.n_kv_heads = c["n_kv_heads"]
        self.head_dim = c["d_model"] // c["n_heads"]
        d, bias = c["d_model"], bool(c["qkv_bias"])
        self.q_proj = nn.Linear(d, self.n_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(d, self.n_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(d, self.n_kv_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, d, bias=False)

    def heads(self, x, n):
        B, T, _ = x.shape
        return x.view(B, T, n, self.head_dim).transpose(1, 2)

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        q = self.heads(self.q_proj(x), self.n_heads)
        k = self.heads(self.k_proj(x), self.n_kv_heads)
        v = self.heads(self.v_proj(x), self.n_kv_heads)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        group = self.n_heads // self.n_kv_heads
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
        if hasattr(F, "scaled_dot_product_attention"):
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)
            probs = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)
            out = probs @ v
        return self.o_proj(out.transpose(1, 2).reshape(B, T, -1))


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, ff = c["d_model"], c["d_ff"]
        self.gate_proj = nn.Linear(d, ff, bias=False)
        self.up_proj = nn.Linear(d, ff, bias=False)
        self.down_proj = nn.Linear(ff, d, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.input_layernorm = RMSNorm(c["d_model"], c["norm_eps"])
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c["d_model"], c["norm_eps"])
        self.mlp = MLP(c)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Backbone(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["d_model"])
        self.layers = nn.ModuleList(DecoderLayer(c) for _ in range(c["n_layers"]))
        self.norm = RMSNorm(c["d_model"], c["norm_eps"])


class Student(nn.Module):
    def __init__(self, c):
        super().__init__()
        assert c["tied_embeddings"], "the benchmark model has tied embeddings"
        self.model = Backbone(c)
        self.logit_scale = c["logit_scale"]
        self.prefix_lm = bool(c["prefix_lm"])
        self.cos, self.sin = rotary_tables(c["max_seq_len"], c["d_model"] // c["n_heads"],
                                           c["rope_theta"])

    def attention_mask(self, lengths, prefix, T):
        """[B, 1, T, T]: query i sees key j < max(i + 1, prefix), j < length."""
        i = torch.arange(T)[:, None]
        j = torch.arange(T)[None, :]
        if not self.prefix_lm:
            prefix = torch.zeros_like(prefix)
        visible = j[None] < torch.maximum(i[None] + 1, prefix[:, None, None])
        return (visible & (j[None] < lengths[:, None, None]))[:, None]

    def hidden(self, tokens, lengths, prefix):
        T = tokens.shape[1]
        mask = self.attention_mask(lengths, prefix, T)
        cos, sin = self.cos[:T], self.sin[:T]
        x = self.model.embed_tokens(tokens)
        for layer in self.model.layers:
            x = layer(x, cos, sin, mask)
        return self.model.norm(x)

    def logits(self, h):
        return self.logit_scale * (h @ self.model.embed_tokens.weight.t())

    def token_nll(self, batch):
        """-log p of each weighted token (predicted from the row before it),
        with the logits computed on those rows only, as the C model does."""
        h = self.hidden(batch["tokens"], batch["lengths"], batch["prefix"])
        scored = batch["weights"][:, 1:] > 0
        logits = self.logits(h[:, :-1][scored])
        return F.cross_entropy(logits, batch["tokens"][:, 1:][scored], reduction="none"), scored

    def loss(self, batch):
        nll, scored = self.token_nll(batch)
        return (batch["weights"][:, 1:][scored] * nll).sum()


def read_tensor_table(directory):
    """[(name, offset, shape, decays)] in params.f32 order."""
    table = []
    with open(os.path.join(directory, "tensors.txt")) as f:
        for line in f:
            name, offset, rows, cols, decays = line.split()
            shape = (int(rows), int(cols)) if int(cols) else (int(rows),)
            table.append((name, int(offset), shape, decays == "1"))
    return table


def unflatten(flat, table):
    return {name: torch.from_numpy(flat[offset:offset + math.prod(shape)].reshape(shape))
            for name, offset, shape, _ in table}


def load_model(directory):
    config = read_config(directory)
    table = read_tensor_table(directory)
    model = Student(config)
    flat = np.fromfile(os.path.join(directory, "params.f32"), dtype="<f4")
    model.load_state_dict(unflatten(flat, table), strict=True)
    return model, config, table


def read_batch(directory, name, config):
    def read(suffix, dtype):
        return torch.from_numpy(np.fromfile(os.path.join(directory, f"{name}_{suffix}"), dtype=dtype))

    lengths = read("lengths.i32", "<i4").long()
    B = lengths.shape[0]
    return {"tokens": read("tokens.i32", "<i4").long().view(B, -1),
            "lengths": lengths,
            "prefix": read("prefix.i32", "<i4").long(),
            "weights": read("weights.f32", "<f4").view(B, -1)}


def check(directory):
    """Our -log p of every target token and our gradient against PyTorch's."""
    model, config, table = load_model(directory)
    batch = read_batch(directory, "check", config)
    nll, scored = model.token_nll(batch)
    loss = (batch["weights"][:, 1:][scored] * nll).sum()
    loss.backward()

    B = batch["lengths"].shape[0]
    c_nll = torch.from_numpy(np.fromfile(os.path.join(directory, "check_nll.f32"), dtype="<f4"))
    c_nll = c_nll.view(B, -1)[:, 1:][scored]
    c_loss = (batch["weights"][:, 1:][scored] * c_nll).sum()
    logp_diff = (c_nll - nll.detach()).abs().max().item()
    loss_diff = abs(c_loss.item() - loss.item())

    c_grads = unflatten(np.fromfile(os.path.join(directory, "grads.f32"), dtype="<f4"), table)
    params = dict(model.named_parameters())
    grad_err = max(((c_grads[name] - params[name].grad).abs().max()
                    / params[name].grad.abs().max().clamp(min=1e-30)).item()
                   for name, _, _, _ in table)
    print(f"{logp_diff:.3g} {loss_diff:.3g} {grad_err:.3g} {int(scored.sum())}")


def adamw(model, config, table):
    """AdamW with decay on the block matrices only, as src/core/optim.c."""
    params = dict(model.named_parameters())
    decay = [params[name] for name, _, _, decays in table if decays]
    no_decay = [params[name] for name, _, _, decays in table if not decays]
    return torch.optim.AdamW([{"params": decay, "weight_decay": config["weight_decay"]},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=config["lr"], betas=(config["beta1"], config["beta2"]),
                             eps=config["eps"])


def speed(directory, threads):
    """Tokens/s of forward + backward + clipping + AdamW on the speed batch:
    the median of TORCH_STEPS steps after a warm-up step."""
    torch.set_num_threads(threads)
    model, config, table = load_model(directory)
    batch = read_batch(directory, "speed", config)
    opt = adamw(model, config, table)
    seconds = []
    for step in range(1 + int(os.environ.get("TORCH_STEPS", "3"))):
        start = time.perf_counter()
        opt.zero_grad()
        model.loss(batch).backward()
        nn.utils.clip_grad_norm_(model.parameters(), config["grad_clip"])
        opt.step()
        if step > 0:
            seconds.append(time.perf_counter() - start)
    print(f"{int(batch['lengths'].sum()) / statistics.median(seconds):.0f}")


# SmolLM2-135M's shape (bench/bench_135m.h): causal, no biases, tied.
CONFIG_135M = {"vocab_size": 49152, "d_model": 576, "n_layers": 30, "n_heads": 9,
               "n_kv_heads": 3, "d_ff": 1536, "max_seq_len": 2048, "tied_embeddings": 1,
               "prefix_lm": 0, "qkv_bias": 0, "rope_theta": 100000.0, "norm_eps": 1e-5,
               "logit_scale": 1.0}
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class LoRALinear(nn.Module):
    """A frozen nn.Linear plus scaling * B A x, as PEFT's LoRA Linear: A
    Kaiming-uniform (a = sqrt(5), nn.Linear's own init), B zeros, no
    dropout."""

    def __init__(self, base, rank, alpha):
        super().__init__()
        self.base_layer = base
        self.lora_A = nn.Linear(base.in_features, rank, bias=False)
        self.lora_B = nn.Linear(rank, base.out_features, bias=False)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.scaling = alpha / rank

    def forward(self, x):
        return self.base_layer(x) + self.lora_B(self.lora_A(x)) * self.scaling


def attach_lora(model, rank, alpha):
    """Freeze every parameter, then wrap each target projection in LoRA;
    returns the adapters' parameters (the only ones that train)."""
    for p in model.parameters():
        p.requires_grad_(False)
    for layer in model.model.layers:
        for parent in (layer.self_attn, layer.mlp):
            for name in LORA_TARGETS:
                if hasattr(parent, name):
                    setattr(parent, name, LoRALinear(getattr(parent, name), rank, alpha))
    return [p for p in model.parameters() if p.requires_grad]


def causal_batch(batch_size, seq_len, vocab_size):
    """Random ids, every row full, the loss the mean over every token but
    the first of each row (train_bench.c's BATCH_CAUSAL)."""
    g = torch.Generator().manual_seed(1)
    weights = torch.full((batch_size, seq_len), 1.0 / (batch_size * (seq_len - 1)))
    weights[:, 0] = 0.0
    return {"tokens": torch.randint(vocab_size, (batch_size, seq_len), generator=g),
            "lengths": torch.full((batch_size,), seq_len),
            "prefix": torch.zeros(batch_size, dtype=torch.long),
            "weights": weights}


def pretrained(mode, threads):
    """Seconds a step, tokens/s and this process's peak RSS (kB) of
    forward + backward + clipping + AdamW on SmolLM2-135M's shape with
    random weights (nn's own init, N(0, 1) embeddings), a batch of
    BENCH_BATCH x BENCH_SEQ (8 x 256) random ids, MICRO_BATCH sequences
    (all) per forward and backward (gradient accumulation, as
    train_bench.c): "full" trains every
    parameter (AdamW's decay on the block matrices, as src/core/optim.c),
    "lora" adapters of rank LORA_RANK (16), alpha LORA_ALPHA (32) on every
    projection of the blocks, all else frozen.  The median of TORCH_STEPS
    steps after a warm-up step; optimizer settings are optim.c's defaults."""
    torch.set_num_threads(threads)
    torch.manual_seed(1234)
    config = CONFIG_135M
    model = Student(config)
    batch = causal_batch(int(os.environ.get("BENCH_BATCH", "8")),
                         int(os.environ.get("BENCH_SEQ", "256")), config["vocab_size"])
    if mode == "full":
        matrices = [p for n, p in model.named_parameters() if p.dim() == 2 and ".layers." in n]
        others = [p for n, p in model.named_parameters() if not (p.dim() == 2 and ".layers." in n)]
        groups = [{"params": matrices, "weight_decay": 0.01}, {"params": others, "weight_decay": 0.0}]
    elif mode == "lora":
        groups = [{"params": attach_lora(model, int(os.environ.get("LORA_RANK", "16")),
                                         float(os.environ.get("LORA_ALPHA", "32"))),
                   "weight_decay": 0.01}]
    else:
        sys.exit(f"unknown training mode {mode!r} (full, lora)")
    trained = [p for group in groups for p in group["params"]]
    opt = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    micro = int(os.environ.get("MICRO_BATCH", "0")) or len(batch["lengths"])
    micro_batches = [{key: value[first:first + micro] for key, value in batch.items()}
                     for first in range(0, len(batch["lengths"]), micro)]
    seconds = []
    for step in range(1 + int(os.environ.get("TORCH_STEPS", "3"))):
        start = time.perf_counter()
        opt.zero_grad()
        for part in micro_batches:  # the weights are the whole batch's
            model.loss(part).backward()
        nn.utils.clip_grad_norm_(trained, 1.0)
        opt.step()
        if step > 0:
            seconds.append(time.perf_counter() - start)
    step_s = statistics.median(seconds)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{step_s:.3f} {int(batch['lengths'].sum()) / step_s:.0f} {peak_kb}")


def info():
    with open("/proc/self/maps") as f:
        blas = {line.split()[-1] for line in f if "libblas" in line}
    print(f"PyTorch {torch.__version__}, BLAS {' '.join(sorted(blas)) or 'built in'}")


if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1] == "info":
        info()
    elif len(sys.argv) == 3 and sys.argv[1] == "check":
        check(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "speed":
        speed(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) == 4 and sys.argv[1] == "pretrained":
        pretrained(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit("usage: train_torch.py info | check DIR | speed DIR THREADS"
                 " | pretrained full|lora THREADS")
