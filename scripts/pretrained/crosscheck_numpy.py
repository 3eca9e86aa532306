#!/usr/bin/env python3
"""Cross-check torch_logprobs.txt against numpy forward passes written differently.

Usage: crosscheck_numpy.py STORIES_DIR RANDOM_DIR TORCH_LOGPROBS.txt

1. stories260K_hf: the log-probabilities of torch_reference.py (run on the HF
   conversion, rotate-half RoPE) against STORIES_DIR/reference.py's own numpy
   forward on the original llama2.c file (pair-interleaved RoPE), which was
   written independently of this directory's scripts.
2. llama3_gqa and qwen2: a token-at-a-time numpy forward with a KV cache and
   RoPE as complex multiplication of (x[i], x[i + hd/2]), with the llama3
   frequency bands computed per frequency in plain Python.
Prints the largest difference per checkpoint, relative to max(1, |value|),
and exits non-zero when one exceeds 1e-8.  Needs Debian's python3-numpy.
"""
import importlib.util
import json
import math
import os
import sys

import numpy as np

# The golden file holds 9 significant digits: a relative rounding of 5e-9 at most.
TOLERANCE = 1e-8


def read_logprobs(path):
    out, lines, i = {}, open(path).read().split('\n'), 0
    while i < len(lines) and lines[i]:
        name, n, vocab = lines[i].split()
        ids = [int(t) for t in lines[i + 1].split()]
        rows = np.array([[float(v) for v in lines[i + 2 + r].split()] for r in range(int(n))])
        assert rows.shape == (int(n), int(vocab)) and len(ids) == int(n)
        out[name] = (ids, rows)
        i += 2 + int(n)
    return out


def read_safetensors_np(path):
    raw = open(path, 'rb').read()
    n = int.from_bytes(raw[:8], 'little')
    header = json.loads(raw[8:8 + n])
    header.pop('__metadata__', None)
    out = {}
    for name, info in header.items():
        b, e = info['data_offsets']
        blob = raw[8 + n + b:8 + n + e]
        if info['dtype'] == 'F32':
            a = np.frombuffer(blob, '<f4')
        elif info['dtype'] == 'BF16':
            a = (np.frombuffer(blob, '<u2').astype(np.uint32) << 16).view(np.float32)
        else:
            raise ValueError(info['dtype'])
        out[name] = a.astype(np.float64).reshape(info['shape'])
    return out


def log_softmax(z):
    z = z - z.max()
    return z - math.log(np.exp(z).sum())


def inv_freqs(cfg, hd):
    theta = cfg['rope_theta']
    freqs = [theta ** (-(2 * i) / hd) for i in range(hd // 2)]
    rs = cfg.get('rope_scaling')
    if not rs:
        return np.array(freqs)
    out = []
    for f in freqs:
        wl = 2 * math.pi / f
        old = rs['original_max_position_embeddings']
        if wl < old / rs['high_freq_factor']:
            out.append(f)
        elif wl > old / rs['low_freq_factor']:
            out.append(f / rs['factor'])
        else:
            s = (old / wl - rs['low_freq_factor']) / (rs['high_freq_factor'] - rs['low_freq_factor'])
            out.append((1 - s) * f / rs['factor'] + s * f)
    return np.array(out)


def numpy_forward(cfg, W, ids):
    nh = cfg['num_attention_heads']
    nkv, hd, eps = cfg['num_key_value_heads'], cfg['head_dim'], cfg['rms_norm_eps']
    L = cfg['num_hidden_layers']
    bias = cfg['model_type'] == 'qwen2'
    freqs = inv_freqs(cfg, hd)
    head = W['model.embed_tokens.weight'] if cfg['tie_word_embeddings'] else W['lm_head.weight']
    norm = lambda x, w: w * x / np.sqrt(np.mean(x * x) + eps)
    kc = [[] for _ in range(L)]
    vc = [[] for _ in range(L)]
    rows = []
    for pos, tok in enumerate(ids):
        rot = np.exp(1j * pos * freqs)

        def rope(v, n):
            v = v.reshape(n, hd)
            c = (v[:, :hd // 2] + 1j * v[:, hd // 2:]) * rot
            return np.concatenate([c.real, c.imag], axis=1)

        x = W['model.embed_tokens.weight'][tok].copy()
        for l in range(L):
            p = 'model.layers.%d.' % l
            g = lambda n: W[p + n + '.weight'] @ h + (W[p + n + '.bias'] if bias and 'proj' in n and 'o_proj' not in n else 0)
            h = norm(x, W[p + 'input_layernorm.weight'])
            q = rope(g('self_attn.q_proj'), nh)
            kc[l].append(rope(g('self_attn.k_proj'), nkv))
            vc[l].append(g('self_attn.v_proj').reshape(nkv, hd))
            K, V = np.stack(kc[l]), np.stack(vc[l])
            out = []
            for hh in range(nh):
                kv = hh // (nh // nkv)
                s = K[:, kv, :] @ q[hh] / math.sqrt(hd)
                a = np.exp(s - s.max())
                out.append((a / a.sum()) @ V[:, kv, :])
            x = x + W[p + 'self_attn.o_proj.weight'] @ np.concatenate(out)
            h = norm(x, W[p + 'post_attention_layernorm.weight'])
            a = W[p + 'mlp.gate_proj.weight'] @ h
            x = x + W[p + 'mlp.down_proj.weight'] @ (a / (1 + np.exp(-a)) * (W[p + 'mlp.up_proj.weight'] @ h))
        rows.append(log_softmax(head @ norm(x, W['model.norm.weight'])))
    return np.array(rows)


def stories_reference(stories, ids):
    spec = importlib.util.spec_from_file_location('reference', os.path.join(stories, 'reference.py'))
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    cfg, w, _, _ = ref.load_model(os.path.join(stories, 'stories260K.bin'))
    kv = cfg['n_kv'] * cfg['head']
    kc = np.zeros((cfg['n_layers'], cfg['seq_len'], kv))
    vc = np.zeros_like(kc)
    return np.array([log_softmax(ref.forward(cfg, w, t, p, kc, vc)) for p, t in enumerate(ids)])


def rel_err(got, want):
    return (np.abs(got - want) / np.maximum(1.0, np.abs(want))).max()


def main(argv):
    if len(argv) != 4:
        sys.exit('usage: crosscheck_numpy.py STORIES_DIR RANDOM_DIR TORCH_LOGPROBS.txt')
    stories, random_dir, golden = argv[1:]
    lp = read_logprobs(golden)
    worst = {}
    ids, rows = lp['stories260K_hf']
    worst['stories260K_hf'] = rel_err(stories_reference(stories, ids), rows)
    for name in ('llama3_gqa', 'qwen2'):
        d = os.path.join(random_dir, name)
        cfg = json.load(open(os.path.join(d, 'config.json')))
        ids, rows = lp[name]
        got = numpy_forward(cfg, read_safetensors_np(os.path.join(d, 'model.safetensors')), ids)
        worst[name] = rel_err(got, rows)
    for name, err in worst.items():
        print('%-16s max |numpy - torch| / max(1, |torch|) = %.3g' % (name, err))
    sys.exit(0 if max(worst.values()) <= TOLERANCE else 1)


if __name__ == '__main__':
    main(sys.argv)
