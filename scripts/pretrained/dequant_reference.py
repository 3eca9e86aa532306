#!/usr/bin/env python3
"""Greedy decoding of the stories260K GGUF files with weights dequantized to float64.

Usage: dequant_reference.py STORIES_DIR GGUF_DIR OUT.json

Reads stories260K-{f32,f16,q8_0}.gguf (made by convert.py), dequantizes every
tensor (F16 -> value, Q8_0 -> d * q) and runs the float64 numpy forward pass of
STORIES_DIR/reference.py on them, for the three prompts of the golden texts.
It records the generated ids, the text, and for every generated token the
margin between the two largest logits, and compares with the golden texts.

Why: llama.cpp multiplies F16 and Q8_0 weights by activations that it rounds to
F16 / Q8_0 as well, so its greedy output on those files is not what an
importer that dequantizes the weights and computes in float32 should produce.
This is that other reference: only the weights are rounded.  Where it departs
from the float32 golden texts, the margins say how close the call was.
Needs Debian's python3-numpy.
"""
import importlib.util
import json
import os
import struct
import sys

import numpy as np

GGUF_SCALAR = {0: 'B', 1: 'b', 2: 'H', 3: 'h', 4: 'I', 5: 'i', 6: 'f', 7: 'B', 10: 'Q', 11: 'q', 12: 'd'}
PROMPTS = [('bos_200', '', 200, 'gen_bos_200.txt'), ('zoo_60', 'Zoo', 60, 'gen_zoo_60.txt'),
           ('prompt_120', 'The little dog', 120, 'gen_prompt.txt')]


class Reader:
    def __init__(self, raw):
        self.raw, self.pos = raw, 0

    def take(self, fmt):
        vals = struct.unpack_from('<' + fmt, self.raw, self.pos)
        self.pos += struct.calcsize('<' + fmt)
        return vals[0] if len(vals) == 1 else vals

    def string(self):
        n = self.take('Q')
        s = self.raw[self.pos:self.pos + n].decode('utf-8')
        self.pos += n
        return s

    def value(self, vtype):
        if vtype == 8:
            return self.string()
        if vtype == 9:
            etype, n = self.take('I'), self.take('Q')
            return [self.value(etype) for _ in range(n)]
        return self.take(GGUF_SCALAR[vtype])


def read_gguf(path):
    """Metadata dict and name -> float64 array (PyTorch shape) of a GGUF file."""
    raw = open(path, 'rb').read()
    r = Reader(raw)
    if r.take('4s') != b'GGUF' or r.take('I') != 3:
        sys.exit('%s: not GGUF v3' % path)
    n_tensors, n_kv = r.take('Q'), r.take('Q')
    meta = {}
    for _ in range(n_kv):
        key = r.string()
        meta[key] = r.value(r.take('I'))
    infos = []
    for _ in range(n_tensors):
        name = r.string()
        dims = [r.take('Q') for _ in range(r.take('I'))]
        infos.append((name, dims, r.take('I'), r.take('Q')))
    align = meta.get('general.alignment', 32)
    base = (r.pos + align - 1) // align * align
    tensors = {}
    for name, dims, gtype, off in infos:
        n = int(np.prod(dims))
        start = base + off
        if gtype == 0:
            a = np.frombuffer(raw, '<f4', n, start).astype(np.float64)
        elif gtype == 1:
            a = np.frombuffer(raw, '<f2', n, start).astype(np.float64)
        elif gtype == 8:
            blocks = np.frombuffer(raw, np.uint8, n // 32 * 34, start).reshape(-1, 34)
            d = blocks[:, :2].copy().view('<f2').astype(np.float64)
            q = blocks[:, 2:].copy().view(np.int8).astype(np.float64)
            a = (d * q).reshape(-1)
        else:
            sys.exit('%s: tensor %s has type %d' % (path, name, gtype))
        tensors[name] = a.reshape(list(reversed(dims)))
    return meta, tensors


def reference_weights(meta, t):
    """The weight dict of reference.py (llama2.c layout) from GGUF tensors."""
    n_layers = meta['llama.block_count']
    stack = lambda n: np.stack([t['blk.%d.%s.weight' % (l, n)] for l in range(n_layers)])
    w = {'emb': t['token_embd.weight'], 'rms_final': t['output_norm.weight'],
         'rms_att': stack('attn_norm'), 'wq': stack('attn_q'), 'wk': stack('attn_k'),
         'wv': stack('attn_v'), 'wo': stack('attn_output'), 'rms_ffn': stack('ffn_norm'),
         'w1': stack('ffn_gate'), 'w2': stack('ffn_down'), 'w3': stack('ffn_up')}
    w['wcls'] = w['emb']
    return w


def greedy(ref, cfg, w, toks, scores, prompt, steps):
    ids = ref.encode(prompt, toks, scores)
    kv_dim = cfg['n_kv'] * cfg['head']
    kc = np.zeros((cfg['n_layers'], cfg['seq_len'], kv_dim))
    vc = np.zeros_like(kc)
    seq, margins, tok = list(ids), [], ids[0]
    for pos in range(steps):
        logits = ref.forward(cfg, w, tok, pos, kc, vc)
        if pos + 1 < len(ids):
            tok = ids[pos + 1]
            continue
        top = np.argsort(logits)[::-1]
        tok = int(top[0])
        if tok in (1, 2):
            break
        margins.append(round(float(logits[top[0]] - logits[top[1]]), 6))
        seq.append(tok)
    text = b''.join(ref.decode_piece(seq[i - 1], seq[i], toks) for i in range(1, len(seq)))
    return ids, seq[len(ids):], text.decode('utf-8', errors='replace'), margins


def main(argv):
    if len(argv) != 4:
        sys.exit('usage: dequant_reference.py STORIES_DIR GGUF_DIR OUT.json')
    stories, gguf_dir, out_path = argv[1:]
    spec = importlib.util.spec_from_file_location('reference', os.path.join(stories, 'reference.py'))
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    cfg, _, _, _ = ref.load_model(os.path.join(stories, 'stories260K.bin'))
    toks, scores, _ = ref.load_tokenizer(os.path.join(stories, 'tok512.bin'), cfg['vocab'])
    out = {'generator': 'scripts/pretrained/dequant_reference.py', 'results': {}}
    for ftype in ('f32', 'f16', 'q8_0'):
        name = 'stories260K-%s.gguf' % ftype
        meta, tensors = read_gguf(os.path.join(gguf_dir, name))
        w = reference_weights(meta, tensors)
        res = out['results'][name] = {}
        for key, prompt, steps, golden in PROMPTS:
            ids, gen, text, margins = greedy(ref, cfg, w, toks, scores, prompt, steps)
            want = open(os.path.join(stories, golden), encoding='utf-8').read()
            same = text + '\n' == want
            res[key] = {'prompt': prompt, 'steps': steps, 'prompt_ids': ids, 'generated_ids': gen,
                        'text': text, 'top2_logit_margins': margins, 'equals_golden': same}
            print('%-22s %-10s equals golden: %s, smallest margin %.6f' %
                  (name, key, same, min(margins)), file=sys.stderr)
    with open(out_path, 'w', encoding='utf-8') as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write('\n')


if __name__ == '__main__':
    main(sys.argv)
