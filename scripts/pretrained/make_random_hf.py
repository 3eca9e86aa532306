#!/usr/bin/env python3
"""Write small seeded random Hugging Face checkpoints (config.json + safetensors).

Usage: make_random_hf.py OUT_DIR

Makes OUT_DIR/<name>/ for each checkpoint of CHECKPOINTS:
  llama3_gqa     Llama, grouped-query attention (4 query heads over 2 KV heads),
                 head_dim 24 != hidden/heads, untied lm_head, rope_theta 500000,
                 Llama-3 rope_scaling (original_max_position_embeddings 32, so
                 that the 12 frequencies fall in all three of its bands: kept,
                 smoothed and divided by the factor)
  qwen2          Qwen2: biases on q/k/v (none on o), tied embeddings, rope_theta 1e6
  llama_bf16     plain Llama (multi-head attention), weights stored as BF16
  llama_sharded  plain Llama split into two safetensors files with an index

Why: distill's import of HF checkpoints is compared, at test time, with the
log-probabilities that torch_reference.py computed on these files.  The files
are too big to commit, so this script only uses the standard library and
regenerates them byte for byte: the values come from splitmix64 (seeded per
checkpoint), mapped to uniform floats and rounded to float32 (then to BF16
where stored so).  No tokenizer is written: the tests feed token ids.
"""
import os
import sys
from array import array

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from convert import write_json, write_safetensors  # noqa: E402

MASK64 = (1 << 64) - 1

CHECKPOINTS = {
    'llama3_gqa': dict(
        seed=101, arch='LlamaForCausalLM', model_type='llama', dtype='F32', shards=1,
        vocab=300, hidden=64, intermediate=112, layers=2, heads=4, kv_heads=2, head_dim=24,
        tied=False, rope_theta=500000.0, rms_eps=1e-5, qkv_bias=False,
        rope_scaling={'rope_type': 'llama3', 'factor': 8.0, 'low_freq_factor': 1.0,
                      'high_freq_factor': 4.0, 'original_max_position_embeddings': 32}),
    'qwen2': dict(
        seed=202, arch='Qwen2ForCausalLM', model_type='qwen2', dtype='F32', shards=1,
        vocab=320, hidden=96, intermediate=160, layers=2, heads=6, kv_heads=2, head_dim=16,
        tied=True, rope_theta=1000000.0, rms_eps=1e-6, qkv_bias=True, rope_scaling=None),
    'llama_bf16': dict(
        seed=303, arch='LlamaForCausalLM', model_type='llama', dtype='BF16', shards=1,
        vocab=256, hidden=48, intermediate=128, layers=2, heads=4, kv_heads=4, head_dim=12,
        tied=False, rope_theta=10000.0, rms_eps=1e-5, qkv_bias=False, rope_scaling=None),
    'llama_sharded': dict(
        seed=404, arch='LlamaForCausalLM', model_type='llama', dtype='F32', shards=2,
        vocab=288, hidden=80, intermediate=144, layers=2, heads=5, kv_heads=5, head_dim=16,
        tied=True, rope_theta=10000.0, rms_eps=1e-5, qkv_bias=False, rope_scaling=None),
}


class SplitMix64:
    """splitmix64 (Steele, Lea, Flood 2014): a 64-bit state stepped by the golden gamma."""

    def __init__(self, seed):
        self.state = seed & MASK64

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def uniform(self, n, lo, hi):
        """n float32 values, uniform in [lo, hi) (53-bit fractions, then rounded)."""
        scale = (hi - lo) / float(1 << 53)
        return array('f', (lo + (self.next() >> 11) * scale for _ in range(n)))


def tensor_plan(c):
    """(name, shape, lo, hi) of every tensor, in generation order.

    Ranges: embeddings U(-1, 1); a projection with `fan_in` inputs U(+-sqrt(3/fan_in))
    (unit variance out for unit variance in); norm weights 1 +- 0.25; biases +-0.5;
    an untied lm_head three times wider, so the log-probabilities are far from uniform.
    """
    d, f, hd = c['hidden'], c['intermediate'], c['head_dim']
    q_dim, kv_dim = c['heads'] * hd, c['kv_heads'] * hd
    proj = lambda fan_in, k=1.0: (-k * (3.0 / fan_in) ** 0.5, k * (3.0 / fan_in) ** 0.5)
    plan = [('model.embed_tokens.weight', (c['vocab'], d), -1.0, 1.0)]
    for l in range(c['layers']):
        p = 'model.layers.%d.' % l
        plan += [(p + 'input_layernorm.weight', (d,), 0.75, 1.25),
                 (p + 'self_attn.q_proj.weight', (q_dim, d)) + proj(d),
                 (p + 'self_attn.k_proj.weight', (kv_dim, d)) + proj(d),
                 (p + 'self_attn.v_proj.weight', (kv_dim, d)) + proj(d)]
        if c['qkv_bias']:
            plan += [(p + 'self_attn.q_proj.bias', (q_dim,), -0.5, 0.5),
                     (p + 'self_attn.k_proj.bias', (kv_dim,), -0.5, 0.5),
                     (p + 'self_attn.v_proj.bias', (kv_dim,), -0.5, 0.5)]
        plan += [(p + 'self_attn.o_proj.weight', (d, q_dim)) + proj(q_dim),
                 (p + 'post_attention_layernorm.weight', (d,), 0.75, 1.25),
                 (p + 'mlp.gate_proj.weight', (f, d)) + proj(d),
                 (p + 'mlp.up_proj.weight', (f, d)) + proj(d),
                 (p + 'mlp.down_proj.weight', (d, f)) + proj(f)]
    plan.append(('model.norm.weight', (d,), 0.75, 1.25))
    if not c['tied']:
        plan.append(('lm_head.weight', (c['vocab'], d)) + proj(d, 3.0))
    return plan


def make_tensors(c):
    rng = SplitMix64(c['seed'])
    tensors = {}
    for name, shape, lo, hi in tensor_plan(c):
        n = 1
        for s in shape:
            n *= s
        tensors[name] = (shape, rng.uniform(n, lo, hi))
    return tensors


def hf_config(c):
    cfg = {
        'architectures': [c['arch']],
        'model_type': c['model_type'],
        'vocab_size': c['vocab'],
        'hidden_size': c['hidden'],
        'intermediate_size': c['intermediate'],
        'num_hidden_layers': c['layers'],
        'num_attention_heads': c['heads'],
        'num_key_value_heads': c['kv_heads'],
        'head_dim': c['head_dim'],
        'hidden_act': 'silu',
        'max_position_embeddings': 256,
        'rms_norm_eps': c['rms_eps'],
        'rope_theta': c['rope_theta'],
        'rope_scaling': c['rope_scaling'],
        'tie_word_embeddings': c['tied'],
        'bos_token_id': 1,
        'eos_token_id': 2,
        'initializer_range': 0.02,
        'use_cache': True,
        'torch_dtype': {'F32': 'float32', 'BF16': 'bfloat16'}[c['dtype']],
    }
    if c['model_type'] == 'llama':
        cfg.update(attention_bias=False, mlp_bias=False, pretraining_tp=1)
    else:
        cfg.update(use_sliding_window=False, sliding_window=None,
                   max_window_layers=c['layers'], attention_dropout=0.0)
    return cfg


def write_checkpoint(out, c):
    os.makedirs(out, exist_ok=True)
    write_json(os.path.join(out, 'config.json'), hf_config(c))
    tensors = make_tensors(c)
    if c['shards'] == 1:
        write_safetensors(os.path.join(out, 'model.safetensors'), tensors, c['dtype'])
        return
    # The shard boundary falls inside layer 0 (its MLP goes to the second file).
    names = sorted(tensors)
    first = [n for n in names if n.startswith('model.embed_tokens.')
             or (n.startswith('model.layers.0.') and '.mlp.' not in n)]
    groups = [first, [n for n in names if n not in first]]
    weight_map, total = {}, 0
    for k, group in enumerate(groups):
        fname = 'model-%05d-of-%05d.safetensors' % (k + 1, len(groups))
        total += write_safetensors(os.path.join(out, fname), {n: tensors[n] for n in group},
                                   c['dtype'])
        for n in group:
            weight_map[n] = fname
    write_json(os.path.join(out, 'model.safetensors.index.json'),
               {'metadata': {'total_size': total},
                'weight_map': {n: weight_map[n] for n in sorted(weight_map)}})


def main(argv):
    if len(argv) != 2:
        sys.exit('usage: make_random_hf.py OUT_DIR')
    for name, c in CHECKPOINTS.items():
        write_checkpoint(os.path.join(argv[1], name), c)


if __name__ == '__main__':
    main(sys.argv)
