#!/usr/bin/env python3
"""Write test/data/lora/golden.json: LoRA losses and adapter gradients from PyTorch.

Usage: /usr/bin/python3 scripts/lora/make_golden.py OUT.json   (needs Debian's python3-torch)

For each case of CASES: a tiny random Llama-shaped model (seeded torch
generator, float32 values) with LoRA adapters on some of its projections,
random A and B (B is not zero, so that A has a gradient), and a right-padded
batch with per-token loss weights.  It writes the weights, the adapters, the
batch, the loss sum(weights * -log p(token | tokens before it)) and its
gradient with respect to every adapter parameter, which test_lora compares
with distill's forward and backward (model_train.c, lora.c).

The model is written here from the semantics of transformers' modeling_llama
and PEFT's LoRA Linear (not from their code, nor from distill's): RMSNorm
x * rsqrt(mean(x^2) + eps) * weight; RoPE rotating halves (rotate_half) with
inv_freq[i] = theta^(-2i/head_dim); grouped-query attention by repeating each
KV head for n_heads / n_kv_heads query heads, scores scaled by head_dim^-0.5,
causal softmax; SwiGLU MLP down(silu(gate(x)) * up(x)); optional q/k/v
biases (Qwen2); tied or separate lm_head, logits times logit_scale; and for
each adapted projection y = x W^T (+ b) + (alpha / r) (x A^T) B^T.  Every
value is computed in float64 from the float32 values stored, and the
gradients come from autograd.

Layouts, as distill's: base tensors by their Hugging Face names, row-major
[out, in]; "lora_params" and "lora_grads" per layer, per target in the order
q, k, v, o, gate, up, down (only those adapted), A [r, in] then B [out, r],
row-major (src/core/lora.h).  Padding positions (t >= length) have weight 0
and, the mask being causal, do not change the positions before them.
"""
import json
import struct
import sys

import torch

TARGETS = ['q', 'k', 'v', 'o', 'gate', 'up', 'down']

CASES = [
    dict(name='untied_gqa_bias', seed=11, vocab=23, d=16, layers=2, heads=4, kv_heads=2,
         head_dim=4, d_ff=24, tied=False, qkv_bias=True, rope_theta=10000.0, eps=1e-5,
         logit_scale=1.0, rank=4, alpha=8.0, targets=TARGETS,
         lengths=[9, 6, 8]),
    dict(name='tied_head6_some', seed=12, vocab=19, d=12, layers=2, heads=2, kv_heads=1,
         head_dim=6, d_ff=20, tied=True, qkv_bias=False, rope_theta=500000.0, eps=1e-6,
         logit_scale=12 ** -0.5, rank=2, alpha=3.0, targets=['q', 'v', 'up', 'down'],
         lengths=[7, 9, 4]),
]


def f32(gen, *shape, scale=1.0, offset=0.0):
    """Uniform(-scale, scale) + offset, rounded to float32, held in float64."""
    x = (torch.rand(*shape, generator=gen, dtype=torch.float64) * 2 - 1) * scale + offset
    return x.to(torch.float32).to(torch.float64)


def make_base(c, gen):
    d, hd = c['d'], c['head_dim']
    q_dim, kv_dim = c['heads'] * hd, c['kv_heads'] * hd
    w = {'model.embed_tokens.weight': f32(gen, c['vocab'], d)}
    for l in range(c['layers']):
        p = 'model.layers.%d.' % l
        w[p + 'input_layernorm.weight'] = f32(gen, d, scale=0.2, offset=1.0)
        w[p + 'self_attn.q_proj.weight'] = f32(gen, q_dim, d, scale=d ** -0.5)
        w[p + 'self_attn.k_proj.weight'] = f32(gen, kv_dim, d, scale=d ** -0.5)
        w[p + 'self_attn.v_proj.weight'] = f32(gen, kv_dim, d, scale=d ** -0.5)
        if c['qkv_bias']:
            w[p + 'self_attn.q_proj.bias'] = f32(gen, q_dim, scale=0.1)
            w[p + 'self_attn.k_proj.bias'] = f32(gen, kv_dim, scale=0.1)
            w[p + 'self_attn.v_proj.bias'] = f32(gen, kv_dim, scale=0.1)
        w[p + 'self_attn.o_proj.weight'] = f32(gen, d, q_dim, scale=q_dim ** -0.5)
        w[p + 'post_attention_layernorm.weight'] = f32(gen, d, scale=0.2, offset=1.0)
        w[p + 'mlp.gate_proj.weight'] = f32(gen, c['d_ff'], d, scale=d ** -0.5)
        w[p + 'mlp.up_proj.weight'] = f32(gen, c['d_ff'], d, scale=d ** -0.5)
        w[p + 'mlp.down_proj.weight'] = f32(gen, d, c['d_ff'], scale=c['d_ff'] ** -0.5)
    w['model.norm.weight'] = f32(gen, d, scale=0.2, offset=1.0)
    if not c['tied']:
        w['lm_head.weight'] = f32(gen, c['vocab'], d)
    return w


def target_shape(c, t):
    """(in, out) of target t's matrix."""
    d, hd = c['d'], c['head_dim']
    q_dim, kv_dim = c['heads'] * hd, c['kv_heads'] * hd
    return {'q': (d, q_dim), 'k': (d, kv_dim), 'v': (d, kv_dim), 'o': (q_dim, d),
            'gate': (d, c['d_ff']), 'up': (d, c['d_ff']), 'down': (c['d_ff'], d)}[t]


def make_adapters(c, gen):
    """{(layer, target): (A, B)} in distill's order, as leaf tensors."""
    r = c['rank']
    adapters = {}
    for l in range(c['layers']):
        for t in TARGETS:
            if t not in c['targets']:
                continue
            n_in, n_out = target_shape(c, t)
            A = f32(gen, r, n_in, scale=n_in ** -0.5).requires_grad_()
            B = f32(gen, n_out, r, scale=0.5).requires_grad_()
            adapters[(l, t)] = (A, B)
    return adapters


def rmsnorm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rope(x, theta):
    """x [B, heads, T, hd] rotated by position."""
    hd, T = x.shape[-1], x.shape[-2]
    inv_freq = torch.tensor([theta ** (-2.0 * i / hd) for i in range(hd // 2)], dtype=torch.float64)
    angles = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq)
    emb = torch.cat((angles, angles), dim=-1)
    return x * emb.cos() + rotate_half(x) * emb.sin()


def loss_of(c, w, adapters, tokens, weights):
    scale = c['alpha'] / c['rank']
    B_, T = tokens.shape
    hd = c['head_dim']
    groups = c['heads'] // c['kv_heads']

    def proj(x, l, t, name, bias=None):
        y = x @ w[name].T
        if bias is not None:
            y = y + w[bias]
        if (l, t) in adapters:
            A, Bm = adapters[(l, t)]
            y = y + scale * ((x @ A.T) @ Bm.T)
        return y

    x = w['model.embed_tokens.weight'][tokens]
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    for l in range(c['layers']):
        p = 'model.layers.%d.' % l
        bias = (lambda n: p + 'self_attn.%s_proj.bias' % n) if c['qkv_bias'] else (lambda n: None)
        h = rmsnorm(x, w[p + 'input_layernorm.weight'], c['eps'])
        q = proj(h, l, 'q', p + 'self_attn.q_proj.weight', bias('q'))
        k = proj(h, l, 'k', p + 'self_attn.k_proj.weight', bias('k'))
        v = proj(h, l, 'v', p + 'self_attn.v_proj.weight', bias('v'))
        q = rope(q.view(B_, T, c['heads'], hd).transpose(1, 2), c['rope_theta'])
        k = rope(k.view(B_, T, c['kv_heads'], hd).transpose(1, 2), c['rope_theta'])
        v = v.view(B_, T, c['kv_heads'], hd).transpose(1, 2)
        k = k.repeat_interleave(groups, dim=1)
        v = v.repeat_interleave(groups, dim=1)
        scores = (q @ k.transpose(-1, -2)) * hd ** -0.5
        scores = scores.masked_fill(~mask, float('-inf'))
        att = torch.softmax(scores, dim=-1) @ v
        att = att.transpose(1, 2).reshape(B_, T, c['heads'] * hd)
        x = x + proj(att, l, 'o', p + 'self_attn.o_proj.weight')
        h = rmsnorm(x, w[p + 'post_attention_layernorm.weight'], c['eps'])
        gate = proj(h, l, 'gate', p + 'mlp.gate_proj.weight')
        up = proj(h, l, 'up', p + 'mlp.up_proj.weight')
        x = x + proj(torch.nn.functional.silu(gate) * up, l, 'down', p + 'mlp.down_proj.weight')
    h = rmsnorm(x, w['model.norm.weight'], c['eps'])
    head = w['model.embed_tokens.weight'] if c['tied'] else w['lm_head.weight']
    logp = torch.log_softmax(c['logit_scale'] * (h @ head.T), dim=-1)
    # token t is predicted at position t - 1
    nll = -logp[:, :-1, :].gather(-1, tokens[:, 1:, None])[..., 0]
    return (weights[:, 1:] * nll).sum()


def make_batch(c, gen):
    B_, T = len(c['lengths']), max(c['lengths'])
    tokens = torch.randint(0, c['vocab'], (B_, T), generator=gen)
    weights = torch.zeros(B_, T, dtype=torch.float64)
    for b, n in enumerate(c['lengths']):
        weights[b, 1:n] = f32(gen, n - 1, scale=0.4, offset=0.6)
    return tokens, weights


def short_f32(x):
    """The shortest decimal that gives float32 x back (parsed as a double, then
    rounded to float32, as test_lora reads it), as a float json writes short."""
    want = struct.unpack('<f', struct.pack('<f', x))[0]
    for digits in range(1, 10):
        text = '%.*g' % (digits, x)
        if struct.unpack('<f', struct.pack('<f', float(text)))[0] == want:
            return float(text)
    raise AssertionError(x)


def floats(t):
    """float32 values, exactly."""
    return [short_f32(x) for x in t.detach().reshape(-1).tolist()]


def expected(t):
    """float64 results, to 10 significant digits."""
    return [float('%.10g' % x) for x in t.detach().reshape(-1).tolist()]


def as_float32(x):
    return float(torch.tensor(x, dtype=torch.float32))


def run_case(c):
    # distill holds these in float32: the reference uses the same values
    c = dict(c, logit_scale=as_float32(c['logit_scale']), eps=as_float32(c['eps']))
    gen = torch.Generator().manual_seed(c['seed'])
    w = make_base(c, gen)
    adapters = make_adapters(c, gen)
    tokens, weights = make_batch(c, gen)
    loss = loss_of(c, w, adapters, tokens, weights)
    loss.backward()
    params, grads = [], []
    for (A, B) in adapters.values():
        params += floats(A) + floats(B)
        grads += expected(A.grad) + expected(B.grad)
    return {
        'name': c['name'],
        'config': {'vocab_size': c['vocab'], 'd_model': c['d'], 'n_layers': c['layers'],
                   'n_heads': c['heads'], 'n_kv_heads': c['kv_heads'], 'head_dim': c['head_dim'],
                   'd_ff': c['d_ff'], 'tied_embeddings': c['tied'], 'qkv_bias': c['qkv_bias'],
                   'rope_theta': c['rope_theta'], 'norm_eps': c['eps'],
                   'logit_scale': c['logit_scale']},
        'lora': {'rank': c['rank'], 'alpha': c['alpha'], 'targets': c['targets']},
        'batch': {'batch_size': tokens.shape[0], 'seq_len': tokens.shape[1],
                  'tokens': tokens.reshape(-1).tolist(), 'lengths': c['lengths'],
                  'weights': floats(weights)},
        'base': {name: floats(t) for name, t in w.items()},
        'lora_params': params,
        'loss': loss.item(),
        'lora_grads': grads,
    }


def main():
    if len(sys.argv) != 2:
        sys.exit('usage: make_golden.py OUT.json')
    golden = {
        'source': 'scripts/lora/make_golden.py, PyTorch %s, float64' % torch.__version__,
        'cases': [run_case(c) for c in CASES],
    }
    with open(sys.argv[1], 'w') as f:
        json.dump(golden, f, separators=(',', ':'))
        f.write('\n')


if __name__ == '__main__':
    main()
