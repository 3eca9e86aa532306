#!/usr/bin/env python3
"""Write a SmolLM2-135M-shaped Llama with random weights as GGUF F32 and F16.

Usage: pretrained_model.py OUT_DIR [SEED]

Writes OUT_DIR/smol135m-f32.gguf and OUT_DIR/smol135m-f16.gguf, and prints one
line per file: its name, bytes, and the seconds the whole run took.

The shape is SmolLM2-135M's (vocab 49152, d_model 576, 30 layers, 9 heads over
3 KV heads of 64, SwiGLU of 1536, tied embeddings, rope_theta 100000,
rms_norm_eps 1e-5, context 2048); the weights are N(0, 0.02), seeded, and the
norms are ones.  The speed of a forward pass does not depend on what the
weights are, so bench/pretrained needs no download.  Two choices keep the
greedy decoding going for as many tokens as it is asked: the embedding rows
of <unk>, <s> and </s> are scaled by 0.01, so that with the tied head their
logits stay near 0, far below the largest of 49152, and neither <s> nor </s>
(which end a generation) is ever chosen.

The tokenizer is a SentencePiece-style `llama` vocabulary like Llama 2's:
<unk>, <s>, </s>, the 256 byte tokens <0xNN>, then synthetic pieces, shortest
first, scored by rank: every printable ASCII character alone and after '▁',
every one to three lowercase letters alone and after '▁', and '▁' with a
capital and two lowercase letters until 49152.  So a lowercase word of at
most three letters after a space is one token, which bench/pretrained uses
to make a prompt of an exact length.

The GGUF layout is convert.py's (scripts/pretrained, the same functions); only
the tensor data is made with numpy, in whole-array writes, to take seconds.
"""
import os
import string
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'scripts', 'pretrained'))
import convert  # noqa: E402

CFG = dict(vocab=49152, dim=576, n_layers=30, n_heads=9, n_kv=3, head=64,
           hidden=1536, seq_len=2048)
ROPE_THETA = 100000.0
STD = 0.02
SPECIAL_SCALE = 0.01
NAME = 'smol135m-random'


def synthetic_pieces(vocab):
    """The vocabulary (specials, bytes, synthetic pieces) and its scores."""
    sp = convert.SPIECE_SPACE
    lower = string.ascii_lowercase
    printable = [c for c in string.printable if c.isprintable() and c != ' ']
    pairs = [a + b for a in lower for b in lower]
    triples = [a + b for a in lower for b in pairs]
    families = ([sp] + printable,                                      # length 1
                [sp + c for c in printable] + pairs,                   # length 2
                [sp + p for p in pairs] + [sp + c + l for c in string.ascii_uppercase
                                           for l in lower] + triples,  # length 3
                [sp + t for t in triples] + [sp + c + p for c in string.ascii_uppercase
                                             for p in pairs])          # length 4
    pieces = ['<unk>', '<s>', '</s>'] + ['<0x%02X>' % b for b in range(convert.N_BYTE_TOKENS)]
    for family in families:
        pieces += family
    if len(pieces) < vocab or len(set(pieces[:vocab])) != vocab:
        sys.exit('the synthetic vocabulary does not make %d distinct pieces' % vocab)
    pieces = pieces[:vocab]
    first = convert.FIRST_BYTE_ID + convert.N_BYTE_TOKENS
    scores = [0.0] * first + [-float(i - first) for i in range(first, vocab)]
    return pieces, scores


def tensor_shapes(cfg):
    """name -> shape in GGUF order, as convert.py's gguf_tensor_order."""
    d, kv, h = cfg['dim'], cfg['n_kv'] * cfg['head'], cfg['hidden']
    per_layer = {'attn_norm': (d,), 'attn_q': (d, d), 'attn_k': (kv, d), 'attn_v': (kv, d),
                 'attn_output': (d, d), 'ffn_norm': (d,), 'ffn_gate': (h, d),
                 'ffn_down': (d, h), 'ffn_up': (h, d)}
    shapes = {}
    for name in convert.gguf_tensor_order(cfg):
        if name == 'token_embd.weight':
            shapes[name] = (cfg['vocab'], d)
        elif name == 'output_norm.weight':
            shapes[name] = (d,)
        else:
            shapes[name] = per_layer[name.split('.')[2]]
    return shapes


def gguf_type(shape, ftype):
    return convert.GGML_F32 if len(shape) == 1 or ftype == 'f32' else convert.GGML_F16


def padded_size(shape, gtype):
    n = int(np.prod(shape)) * (4 if gtype == convert.GGML_F32 else 2)
    return n + (-n % convert.GGUF_ALIGNMENT)


def gguf_head(cfg, shapes, pieces, scores, ftype):
    kvs = convert.gguf_metadata(cfg, pieces, scores, ftype, name=NAME, rope_theta=ROPE_THETA)
    infos, offset = [], 0
    for name, shape in shapes.items():
        gtype = gguf_type(shape, ftype)
        infos.append(convert.gguf_tensor_info(name, shape, gtype, offset))
        offset += padded_size(shape, gtype)
    return convert.gguf_head(kvs, infos)


def tensor_values(rng, name, shape):
    if len(shape) == 1:
        return np.ones(shape, dtype='<f4')
    values = rng.standard_normal(shape, dtype=np.float32)
    values *= STD
    if name == 'token_embd.weight':
        values[:convert.FIRST_BYTE_ID] *= SPECIAL_SCALE
    return values.astype('<f4', copy=False)


def write_padded(f, values):
    values.tofile(f)
    f.write(b'\0' * (-values.nbytes % convert.GGUF_ALIGNMENT))


def main(argv):
    if len(argv) not in (2, 3):
        sys.exit('usage: pretrained_model.py OUT_DIR [SEED]')
    out, seed = argv[1], int(argv[2]) if len(argv) == 3 else 1
    t0 = time.monotonic()
    pieces, scores = synthetic_pieces(CFG['vocab'])
    shapes = tensor_shapes(CFG)
    os.makedirs(out, exist_ok=True)
    paths = {ftype: os.path.join(out, 'smol135m-%s.gguf' % ftype) for ftype in ('f32', 'f16')}
    files = {ftype: open(path, 'wb') for ftype, path in paths.items()}
    for ftype, f in files.items():
        f.write(gguf_head(CFG, shapes, pieces, scores, ftype))
    rng = np.random.default_rng(seed)
    for name, shape in shapes.items():
        values = tensor_values(rng, name, shape)
        for ftype, f in files.items():
            write_padded(f, values if gguf_type(shape, ftype) == convert.GGML_F32
                         else values.astype('<f2'))
    for f in files.values():
        f.close()
    seconds = time.monotonic() - t0
    n_params = sum(int(np.prod(s)) for s in shapes.values())
    for ftype, path in paths.items():
        print('%s %d %.1f %d' % (os.path.basename(path), os.path.getsize(path), seconds, n_params))


if __name__ == '__main__':
    main(sys.argv)
