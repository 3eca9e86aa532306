#!/usr/bin/env python3
"""Next-token log-probabilities of Hugging Face Llama / Qwen2 checkpoints, in PyTorch float64.

Usage: torch_reference.py RANDOM_DIR STORIES_HF_DIR OUT.txt

RANDOM_DIR is the output of make_random_hf.py, STORIES_HF_DIR the output of
convert.py (its hf/ and hf-bf16/ are read).  For each checkpoint of
SEQUENCES the fixed token sequence is run through the model and, at every
position, log_softmax of the logits over the vocabulary is written (format in
test/data/pretrained/README.md).

An independent forward pass, written from the semantics of transformers'
modeling_llama / modeling_qwen2 (not their code): RMSNorm
x * rsqrt(mean(x^2) + eps) * weight; RoPE rotating halves (rotate_half) with
inv_freq[i] = theta^(-2i/head_dim) and, for rope_type llama3, its frequency
bands (kept above high_freq_factor, divided by factor below low_freq_factor,
interpolated between); grouped-query attention by repeating each KV head for
n_heads / n_kv_heads query heads; scores scaled by head_dim^-0.5, causal
softmax; SwiGLU MLP down(silu(gate(x)) * up(x)); Qwen2's q/k/v biases; tied
or separate lm_head.  Everything is computed in float64 from the stored
values (BF16 and F16 weights are widened exactly), so the figures are the
exact-arithmetic answer for the stored weights; transformers itself computes
in the storage dtype (its RoPE tables in float32), about 1e-6 away.
Needs Debian's python3-torch.
"""
import json
import math
import os
import struct
import sys

import torch

# name -> (directory relative to its base, token ids).  Ids cover 0, the last id,
# repeats, and (stories260K) a real text: BOS, "The little dog", then the golden
# greedy continuation.
SEQUENCES = {
    'llama3_gqa': ('random', 'llama3_gqa', [1, 17, 299, 0, 42, 42, 42, 256, 7, 123, 88, 2, 5, 250, 17, 64]),
    'qwen2': ('random', 'qwen2', [3, 319, 0, 1, 77, 150, 150, 9, 200, 31, 318, 64, 12, 99, 5, 2]),
    'llama_bf16': ('random', 'llama_bf16', [1, 255, 0, 128, 128, 3, 64, 200, 17, 9, 31, 250, 2, 77, 100, 11]),
    'llama_sharded': ('random', 'llama_sharded', [1, 287, 0, 55, 55, 55, 140, 7, 19, 260, 3, 99, 2, 180, 44, 8]),
    'stories260K_hf': ('stories', 'hf', [1, 291, 376, 400, 428, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401]),
    'stories260K_hf_bf16': ('stories', 'hf-bf16', [1, 291, 376, 400, 428, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401]),
}

DTYPES = {'F32': ('<f4', 4), 'F16': ('<f2', 2), 'BF16': ('bf16', 2)}


def read_safetensors(path):
    """name -> float64 tensor of one .safetensors file."""
    raw = open(path, 'rb').read()
    (n,) = struct.unpack_from('<Q', raw, 0)
    header = json.loads(raw[8:8 + n])
    header.pop('__metadata__', None)
    base = 8 + n
    out = {}
    for name, info in header.items():
        begin, end = info['data_offsets']
        blob = bytearray(raw[base + begin:base + end])
        shape = info['shape']
        count = math.prod(shape)
        if info['dtype'] == 'F32':
            t = torch.frombuffer(blob, dtype=torch.float32, count=count)
        elif info['dtype'] == 'F16':
            t = torch.frombuffer(blob, dtype=torch.float16, count=count)
        elif info['dtype'] == 'BF16':
            bits = torch.frombuffer(blob, dtype=torch.int16, count=count).to(torch.int32)
            t = ((bits & 0xFFFF) << 16).view(torch.float32)
        else:
            sys.exit('%s: dtype %s of %s not handled' % (path, info['dtype'], name))
        if len(blob) != count * DTYPES[info['dtype']][1]:
            sys.exit('%s: %s has %d bytes for shape %s' % (path, name, len(blob), shape))
        out[name] = t.to(torch.float64).reshape(shape)
    return out


def load_checkpoint(d):
    cfg = json.load(open(os.path.join(d, 'config.json')))
    index = os.path.join(d, 'model.safetensors.index.json')
    weights = {}
    if os.path.exists(index):
        weight_map = json.load(open(index))['weight_map']
        for fname in sorted(set(weight_map.values())):
            part = read_safetensors(os.path.join(d, fname))
            if set(part) != {n for n, f in weight_map.items() if f == fname}:
                sys.exit('%s: %s does not hold what the index says' % (d, fname))
            weights.update(part)
    else:
        weights = read_safetensors(os.path.join(d, 'model.safetensors'))
    return cfg, weights


def rope_inv_freq(cfg, head_dim):
    """inv_freq of transformers' default and llama3 rope types, in float64."""
    theta = float(cfg.get('rope_theta', 10000.0))
    inv = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    rs = cfg.get('rope_scaling')
    if not rs:
        return inv
    kind = rs.get('rope_type', rs.get('type'))
    if kind != 'llama3':
        sys.exit('rope_scaling %r not handled' % kind)
    factor, low, high = rs['factor'], rs['low_freq_factor'], rs['high_freq_factor']
    old_ctx = rs['original_max_position_embeddings']
    low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
    wavelen = 2 * math.pi / inv
    smooth = (old_ctx / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * inv / factor + smooth * inv
    out = torch.where(wavelen > low_wavelen, inv / factor, inv)
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(medium, smoothed, out)


def rms_norm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def linear(x, w, b=None):
    y = x @ w.T
    return y if b is None else y + b


def forward(cfg, W, ids):
    """Log-probabilities [len(ids), vocab] of the next token at every position."""
    mt = cfg['model_type']
    if mt not in ('llama', 'qwen2') or cfg.get('hidden_act', 'silu') != 'silu':
        sys.exit('model_type %s / hidden_act %s not handled' % (mt, cfg.get('hidden_act')))
    d, nh = cfg['hidden_size'], cfg['num_attention_heads']
    nkv = cfg.get('num_key_value_heads', nh)
    hd = cfg.get('head_dim') or d // nh
    eps = cfg['rms_norm_eps']
    qkv_bias = mt == 'qwen2' or cfg.get('attention_bias', False)
    o_bias = mt == 'llama' and cfg.get('attention_bias', False)
    mlp_bias = mt == 'llama' and cfg.get('mlp_bias', False)
    T = len(ids)

    ang = torch.arange(T, dtype=torch.float64)[:, None] * rope_inv_freq(cfg, hd)[None, :]
    emb = torch.cat((ang, ang), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    causal = torch.full((T, T), float('-inf'), dtype=torch.float64).triu(1)

    x = W['model.embed_tokens.weight'][torch.tensor(ids)]
    for l in range(cfg['num_hidden_layers']):
        p = 'model.layers.%d.' % l
        bias = lambda n, on: W[p + n + '.bias'] if on else None
        h = rms_norm(x, W[p + 'input_layernorm.weight'], eps)
        q = linear(h, W[p + 'self_attn.q_proj.weight'], bias('self_attn.q_proj', qkv_bias))
        k = linear(h, W[p + 'self_attn.k_proj.weight'], bias('self_attn.k_proj', qkv_bias))
        v = linear(h, W[p + 'self_attn.v_proj.weight'], bias('self_attn.v_proj', qkv_bias))
        q = q.view(T, nh, hd).transpose(0, 1)
        k = k.view(T, nkv, hd).transpose(0, 1)
        v = v.view(T, nkv, hd).transpose(0, 1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(nh // nkv, dim=0)
        v = v.repeat_interleave(nh // nkv, dim=0)
        att = torch.softmax(q @ k.transpose(1, 2) * hd ** -0.5 + causal, dim=-1)
        o = (att @ v).transpose(0, 1).reshape(T, nh * hd)
        x = x + linear(o, W[p + 'self_attn.o_proj.weight'], bias('self_attn.o_proj', o_bias))
        h = rms_norm(x, W[p + 'post_attention_layernorm.weight'], eps)
        gate = linear(h, W[p + 'mlp.gate_proj.weight'], bias('mlp.gate_proj', mlp_bias))
        up = linear(h, W[p + 'mlp.up_proj.weight'], bias('mlp.up_proj', mlp_bias))
        x = x + linear(torch.nn.functional.silu(gate) * up, W[p + 'mlp.down_proj.weight'],
                       bias('mlp.down_proj', mlp_bias))
    x = rms_norm(x, W['model.norm.weight'], eps)
    tied = cfg.get('tie_word_embeddings', False)
    head = W['model.embed_tokens.weight'] if tied else W['lm_head.weight']
    return torch.log_softmax(x @ head.T, dim=-1)


def main(argv):
    if len(argv) != 4:
        sys.exit('usage: torch_reference.py RANDOM_DIR STORIES_HF_DIR OUT.txt')
    bases = {'random': argv[1], 'stories': argv[2]}
    torch.set_num_threads(1)
    lines = []
    for name, (base, sub, ids) in SEQUENCES.items():
        cfg, W = load_checkpoint(os.path.join(bases[base], sub))
        lp = forward(cfg, W, ids)
        lines.append('%s %d %d' % (name, lp.shape[0], lp.shape[1]))
        lines.append(' '.join(str(i) for i in ids))
        lines += [' '.join('%.9g' % v for v in row.tolist()) for row in lp]
        top = lp.argmax(-1).tolist()
        print('%-20s positions %d vocab %d argmax %s' % (name, lp.shape[0], lp.shape[1], top),
              file=sys.stderr)
    with open(argv[3], 'w') as f:
        f.write('\n'.join(lines) + '\n')


if __name__ == '__main__':
    main(sys.argv)
