#!/usr/bin/env python3
"""Golden greedy token ids of stories260K, for test/unit/test_checkpoint.c.

Usage: /usr/bin/python3 scripts/pretrained/llama2c_golden_ids.py \
           [--model test/data/stories260K/stories260K.bin] \
           [--tokenizer test/data/stories260K/tok512.bin] \
           [--reference ../shared/models/stories260K/reference.py] \
           > test/data/pretrained/stories260K_ids.txt

Runs the independent numpy (float64) llama2.c forward pass of
stories260K's reference.py (imported, not copied) and prints, for the
empty prompt (BOS alone, 200 positions) and the prompt "Zoo" (60
positions), the prompt ids and the greedily generated ids, stopping early
at a BOS as llama2.c does.  The decoded texts must equal the committed
gen_bos_200.txt and gen_zoo_60.txt, which the script checks.  Needs
Debian's python3-numpy.
"""
import argparse
import importlib.util
import os
import sys

import numpy as np

BOS = 1
CASES = (("bos", "", 200, "gen_bos_200.txt"), ("zoo", "Zoo", 60, "gen_zoo_60.txt"))


def load_reference(path):
    spec = importlib.util.spec_from_file_location("reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def greedy_ids(ref, cfg, w, prompt_ids, steps):
    """Generated ids after prompt_ids, over `steps` positions in all."""
    kv_dim = cfg['n_kv'] * cfg['head']
    kc = np.zeros((cfg['n_layers'], cfg['seq_len'], kv_dim))
    vc = np.zeros_like(kc)
    generated = []
    tok = prompt_ids[0]
    for pos in range(steps):
        logits = ref.forward(cfg, w, tok, pos, kc, vc)
        if pos + 1 < len(prompt_ids):
            tok = prompt_ids[pos + 1]
            continue
        tok = int(np.argmax(logits))
        if tok == BOS:
            break
        generated.append(tok)
    return generated


def decode(ref, ids, toks):
    out = b''
    prev = BOS
    for tok in ids:
        out += ref.decode_piece(prev, tok, toks)
        prev = tok
    return out.decode('utf-8', errors='replace')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--model', default='test/data/stories260K/stories260K.bin')
    ap.add_argument('--tokenizer', default='test/data/stories260K/tok512.bin')
    ap.add_argument('--reference', default='../shared/models/stories260K/reference.py')
    a = ap.parse_args()
    ref = load_reference(a.reference)
    cfg, w, _, _ = ref.load_model(a.model)
    toks, scores, _ = ref.load_tokenizer(a.tokenizer, cfg['vocab'])
    golden_dir = os.path.dirname(a.model)

    print("# Greedy token ids of stories260K (test/data/stories260K), made by")
    print("# scripts/pretrained/llama2c_golden_ids.py with the float64 numpy forward")
    print("# pass of stories260K's reference.py (karpathy's tinyllamas, MIT).")
    print("# <case>_prompt: the prompt's ids (BOS first); <case>_generated: the")
    print("# greedy continuation over <steps> positions, stopping before a BOS.")
    for name, prompt, steps, golden in CASES:
        prompt_ids = ref.encode(prompt, toks, scores)
        generated = greedy_ids(ref, cfg, w, prompt_ids, steps)
        text = decode(ref, prompt_ids[1:] + generated, toks)
        with open(os.path.join(golden_dir, golden), encoding='utf-8') as f:
            expected = f.read().rstrip('\n')
        if text != expected:
            sys.exit(f"{name}: the decoded text differs from {golden}")
        print(f"{name}_steps: {steps}")
        print(f"{name}_prompt: {' '.join(map(str, prompt_ids))}")
        print(f"{name}_generated: {' '.join(map(str, generated))}")


if __name__ == '__main__':
    main()
