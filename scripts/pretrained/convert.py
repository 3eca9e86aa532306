#!/usr/bin/env python3
"""Convert the llama2.c checkpoint stories260K into Hugging Face and GGUF files.

Usage: convert.py SRC_DIR OUT_DIR

SRC_DIR holds stories260K.bin and tok512.bin (llama2.c formats, described in
test/data/stories260K/README.md).  OUT_DIR receives:

  hf/                 config.json, generation_config.json, model.safetensors (F32),
                      tokenizer.json, tokenizer_config.json, special_tokens_map.json
  hf-sharded/         the same weights in model-0000{1,2}-of-00002.safetensors with
                      model.safetensors.index.json; its tokenizer.json writes each
                      merge as a [left, right] pair instead of "left right"
  hf-bf16/, hf-f16/   the weights stored as BF16 / F16 (round to nearest even)
  stories260K-f32.gguf, stories260K-f16.gguf, stories260K-q8_0.gguf   GGUF v3

Why: the import tests of distill need checkpoints in the layouts real models
ship in, made by code that does not share distill's reading of the formats.
Only the standard library is used (the tests run this, and numpy is not a
test dependency); the output is the same bytes on every run.

Layouts, as the public converters do them:
  - llama2.c rotates adjacent pairs (2i, 2i+1) of each head; Hugging Face
    rotates halves (i, i + head_dim/2).  The HF files get the rows of wq and
    wk permuted like transformers' convert_llama_weights_to_hf: row
    h*hd + half*hd/2 + i of the HF matrix is row h*hd + 2i + half of
    llama2.c's.
  - GGUF's llama architecture rotates adjacent pairs like llama2.c (llama.cpp's
    HF converter permutes HF rows back), so the GGUF rows are llama2.c's as is.
  - GGUF F16 and Q8_0 files keep the 1-D norm weights in F32, and a matrix
    whose rows are not a whole number of 32-value blocks (ffn_down: 172
    columns) falls back to F16 in the Q8_0 file, as llama.cpp's converter does.
  - The classifier is the embedding (tied): no lm_head / output tensor.
"""
import json
import math
import os
import struct
import sys
from array import array

BOS_ID, EOS_ID, UNK_ID = 1, 2, 0
N_BYTE_TOKENS = 256
FIRST_BYTE_ID = 3
SPIECE_SPACE = '\u2581'
ROPE_THETA = 10000.0
RMS_EPS = 1e-5


def read_checkpoint(path):
    """Header and float32 tensors of a llama2.c .bin (legacy freq_cis dropped)."""
    raw = open(path, 'rb').read()
    if len(raw) < 28:
        sys.exit('%s: shorter than the llama2.c header' % path)
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = struct.unpack_from('<7i', raw, 0)
    if vocab <= 0:
        sys.exit('%s: an untied classifier is not expected for stories260K' % path)
    if min(dim, hidden, n_layers, n_heads, n_kv, seq_len) <= 0 or dim % n_heads or n_heads % n_kv:
        sys.exit('%s: implausible header' % path)
    head = dim // n_heads
    kv_dim = n_kv * head
    cfg = dict(dim=dim, hidden=hidden, n_layers=n_layers, n_heads=n_heads,
               n_kv=n_kv, vocab=vocab, seq_len=seq_len, head=head)
    layout = [('emb', (vocab, dim)), ('rms_att', (n_layers, dim)),
              ('wq', (n_layers, dim, dim)), ('wk', (n_layers, kv_dim, dim)),
              ('wv', (n_layers, kv_dim, dim)), ('wo', (n_layers, dim, dim)),
              ('rms_ffn', (n_layers, dim)), ('w1', (n_layers, hidden, dim)),
              ('w2', (n_layers, dim, hidden)), ('w3', (n_layers, hidden, dim)),
              ('rms_final', (dim,)), ('freq_cis', (2, seq_len, head // 2))]
    total = sum(math.prod(shape) for _, shape in layout)
    if len(raw) != 28 + 4 * total:
        sys.exit('%s: %d bytes, the header implies %d' % (path, len(raw), 28 + 4 * total))
    floats = array('f')
    floats.frombytes(raw[28:])
    if sys.byteorder != 'little':
        floats.byteswap()
    w, off = {}, 0
    for name, shape in layout:
        n = math.prod(shape)
        w[name] = (shape, floats[off:off + n])
        off += n
    del w['freq_cis']
    return cfg, w


def layer_slice(w, name, layer):
    """Shape and values of one layer of a stacked [n_layers, ...] tensor."""
    shape, values = w[name]
    n = math.prod(shape[1:])
    return shape[1:], values[layer * n:(layer + 1) * n]


def read_tokenizer(path, vocab):
    """Pieces (bytes) and scores of a llama2.c tokenizer file."""
    raw = open(path, 'rb').read()
    pos, pieces, scores = 4, [], []
    for i in range(vocab):
        if pos + 8 > len(raw):
            sys.exit('%s: truncated at token %d' % (path, i))
        score, n = struct.unpack_from('<fi', raw, pos)
        pos += 8
        if n < 0 or pos + n > len(raw):
            sys.exit('%s: bad length at token %d' % (path, i))
        pieces.append(raw[pos:pos + n])
        scores.append(score)
        pos += n
    if pos != len(raw):
        sys.exit('%s: %d trailing bytes' % (path, len(raw) - pos))
    return pieces, scores


def spm_pieces(raw_pieces):
    """SentencePiece spellings: '▁' for space, named specials, <0xNN> bytes."""
    out = []
    for i, p in enumerate(raw_pieces):
        if i == UNK_ID:
            out.append('<unk>')
        elif i == BOS_ID:
            out.append('<s>')
        elif i == EOS_ID:
            out.append('</s>')
        elif FIRST_BYTE_ID <= i < FIRST_BYTE_ID + N_BYTE_TOKENS:
            expect = '<0x%02X>' % (i - FIRST_BYTE_ID)
            if p.decode('ascii', 'replace') != expect:
                sys.exit('token %d is %r, expected the byte token %s' % (i, p, expect))
            out.append(expect)
        else:
            out.append(p.decode('utf-8').replace(' ', SPIECE_SPACE))
    if len(set(out)) != len(out):
        sys.exit('duplicate pieces in the tokenizer')
    return out


def token_type(i):
    """GGUF token type: 1 normal, 2 unknown, 3 control, 6 byte."""
    if i == UNK_ID:
        return 2
    if i in (BOS_ID, EOS_ID):
        return 3
    if FIRST_BYTE_ID <= i < FIRST_BYTE_ID + N_BYTE_TOKENS:
        return 6
    return 1


# ---------------------------------------------------------------- tensors

def rotate_half_rows(values, n_heads, head, cols):
    """Permute the rows of each head from pair-interleaved to rotate-half order."""
    out = array('f')
    for h in range(n_heads):
        for half in (0, 1):
            for i in range(head // 2):
                r = h * head + 2 * i + half
                out.extend(values[r * cols:(r + 1) * cols])
    return out


def hf_tensors(cfg, w):
    """name -> (shape, float32 values), Hugging Face LlamaForCausalLM names."""
    t = {'model.embed_tokens.weight': w['emb'], 'model.norm.weight': w['rms_final']}
    head, dim = cfg['head'], cfg['dim']
    for l in range(cfg['n_layers']):
        p = 'model.layers.%d.' % l
        shape, wq = layer_slice(w, 'wq', l)
        t[p + 'self_attn.q_proj.weight'] = (shape, rotate_half_rows(wq, cfg['n_heads'], head, dim))
        shape, wk = layer_slice(w, 'wk', l)
        t[p + 'self_attn.k_proj.weight'] = (shape, rotate_half_rows(wk, cfg['n_kv'], head, dim))
        t[p + 'self_attn.v_proj.weight'] = layer_slice(w, 'wv', l)
        t[p + 'self_attn.o_proj.weight'] = layer_slice(w, 'wo', l)
        t[p + 'mlp.gate_proj.weight'] = layer_slice(w, 'w1', l)
        t[p + 'mlp.down_proj.weight'] = layer_slice(w, 'w2', l)
        t[p + 'mlp.up_proj.weight'] = layer_slice(w, 'w3', l)
        t[p + 'input_layernorm.weight'] = layer_slice(w, 'rms_att', l)
        t[p + 'post_attention_layernorm.weight'] = layer_slice(w, 'rms_ffn', l)
    return t


def gguf_tensors(cfg, w):
    """name -> (shape, float32 values), GGUF llama names, llama2.c row order."""
    t = {'token_embd.weight': w['emb'], 'output_norm.weight': w['rms_final']}
    for l in range(cfg['n_layers']):
        p = 'blk.%d.' % l
        for name, src in (('attn_norm', 'rms_att'), ('attn_q', 'wq'), ('attn_k', 'wk'),
                          ('attn_v', 'wv'), ('attn_output', 'wo'), ('ffn_norm', 'rms_ffn'),
                          ('ffn_gate', 'w1'), ('ffn_down', 'w2'), ('ffn_up', 'w3')):
            t[p + name + '.weight'] = layer_slice(w, src, l)
    return t


def le_bytes(arr):
    if sys.byteorder != 'little':
        arr = array(arr.typecode, arr)
        arr.byteswap()
    return arr.tobytes()


def f32_bytes(values):
    return le_bytes(array('f', values))


def f16_bytes(values):
    """IEEE half, round to nearest even (struct's 'e' rounds correctly)."""
    return struct.pack('<%de' % len(values), *values)


def bf16_bytes(values):
    """bfloat16: the high half of the float32 bits, round to nearest even."""
    bits = array('I')
    bits.frombytes(array('f', values).tobytes())
    out = array('H', ((b + 0x7FFF + ((b >> 16) & 1)) >> 16 for b in bits))
    return le_bytes(out)


def to_f32(x):
    return array('f', (x,))[0]


def q8_0_bytes(values):
    """ggml Q8_0: blocks of 32 as (f16 d, 32 x int8), d = max|x|/127, q = round(x/d).

    The arithmetic is float32 as in ggml's reference quantizer: d and 1/d are
    rounded to float32, q = roundf(x * (1/d)) rounds half away from zero, and
    d is stored as float16 after the values were quantized with the float32 d.
    """
    out = bytearray()
    for b in range(0, len(values), 32):
        block = values[b:b + 32]
        d = to_f32(max(abs(x) for x in block) / 127.0)
        inv = to_f32(1.0 / d) if d else 0.0
        scaled = array('f', (x * inv for x in block))
        q = [int(math.copysign(math.floor(abs(s) + 0.5), s)) for s in scaled]
        out += struct.pack('<e32b', d, *q)
    return bytes(out)


# ---------------------------------------------------------------- safetensors

SAFETENSORS_DTYPES = {'F32': f32_bytes, 'F16': f16_bytes, 'BF16': bf16_bytes}


def write_safetensors(path, tensors, dtype):
    """One .safetensors file: u64 header size, JSON header padded to 8, data."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        shape, values = tensors[name]
        blob = SAFETENSORS_DTYPES[dtype](values)
        header[name] = {'dtype': dtype, 'shape': list(shape),
                        'data_offsets': [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    header['__metadata__'] = {'format': 'pt'}
    text = json.dumps(header, separators=(',', ':')).encode()
    text += b' ' * (-len(text) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)
    return offset


def write_json(path, obj):
    with open(path, 'w', encoding='utf-8', newline='\n') as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write('\n')


def hf_config(cfg, torch_dtype):
    return {
        'architectures': ['LlamaForCausalLM'],
        'model_type': 'llama',
        'vocab_size': cfg['vocab'],
        'hidden_size': cfg['dim'],
        'intermediate_size': cfg['hidden'],
        'num_hidden_layers': cfg['n_layers'],
        'num_attention_heads': cfg['n_heads'],
        'num_key_value_heads': cfg['n_kv'],
        'head_dim': cfg['head'],
        'hidden_act': 'silu',
        'max_position_embeddings': cfg['seq_len'],
        'rms_norm_eps': RMS_EPS,
        'rope_theta': ROPE_THETA,
        'rope_scaling': None,
        'attention_bias': False,
        'mlp_bias': False,
        'tie_word_embeddings': True,
        'bos_token_id': BOS_ID,
        'eos_token_id': EOS_ID,
        'pad_token_id': None,
        'initializer_range': 0.02,
        'pretraining_tp': 1,
        'use_cache': True,
        'torch_dtype': torch_dtype,
    }


def bpe_merges(pieces, scores):
    """Merges the way transformers' SentencePieceExtractor derives them.

    Every split (left, right) of a piece with both halves in the vocabulary is
    a merge; merges are ordered by the merged piece's score, best first, ties
    keeping vocabulary order (merged id, then left id, then right id).
    """
    ids = {p: i for i, p in enumerate(pieces)}
    found = []
    for merged_id, piece in enumerate(pieces):
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in ids and right in ids:
                found.append((-scores[merged_id], merged_id, ids[left], ids[right], left, right))
    found.sort()
    return [(m[4], m[5]) for m in found]


def added_token(i, content):
    return {'id': i, 'content': content, 'single_word': False, 'lstrip': False,
            'rstrip': False, 'normalized': False, 'special': True}


def hf_tokenizer_json(pieces, scores, merges_as_pairs):
    merges = bpe_merges(pieces, scores)
    return {
        'version': '1.0',
        'truncation': None,
        'padding': None,
        'added_tokens': [added_token(UNK_ID, '<unk>'), added_token(BOS_ID, '<s>'),
                         added_token(EOS_ID, '</s>')],
        'normalizer': {'type': 'Sequence', 'normalizers': [
            {'type': 'Prepend', 'prepend': SPIECE_SPACE},
            {'type': 'Replace', 'pattern': {'String': ' '}, 'content': SPIECE_SPACE}]},
        'pre_tokenizer': None,
        'post_processor': {
            'type': 'TemplateProcessing',
            'single': [{'SpecialToken': {'id': '<s>', 'type_id': 0}},
                       {'Sequence': {'id': 'A', 'type_id': 0}}],
            'pair': [{'SpecialToken': {'id': '<s>', 'type_id': 0}},
                     {'Sequence': {'id': 'A', 'type_id': 0}},
                     {'SpecialToken': {'id': '<s>', 'type_id': 1}},
                     {'Sequence': {'id': 'B', 'type_id': 1}}],
            'special_tokens': {'<s>': {'id': '<s>', 'ids': [BOS_ID], 'tokens': ['<s>']}}},
        'decoder': {'type': 'Sequence', 'decoders': [
            {'type': 'Replace', 'pattern': {'String': SPIECE_SPACE}, 'content': ' '},
            {'type': 'ByteFallback'},
            {'type': 'Fuse'},
            {'type': 'Strip', 'content': ' ', 'start': 1, 'stop': 0}]},
        'model': {
            'type': 'BPE',
            'dropout': None,
            'unk_token': '<unk>',
            'continuing_subword_prefix': None,
            'end_of_word_suffix': None,
            'fuse_unk': True,
            'byte_fallback': True,
            'ignore_merges': False,
            'vocab': {p: i for i, p in enumerate(pieces)},
            'merges': [list(m) for m in merges] if merges_as_pairs
                      else ['%s %s' % m for m in merges]},
    }


def hf_tokenizer_config(cfg):
    return {
        'add_bos_token': True,
        'add_eos_token': False,
        'bos_token': '<s>',
        'eos_token': '</s>',
        'unk_token': '<unk>',
        'pad_token': None,
        'clean_up_tokenization_spaces': False,
        'model_max_length': cfg['seq_len'],
        'tokenizer_class': 'LlamaTokenizer',
        'added_tokens_decoder': {str(i): {k: v for k, v in added_token(i, c).items() if k != 'id'}
                                 for i, c in ((UNK_ID, '<unk>'), (BOS_ID, '<s>'), (EOS_ID, '</s>'))},
    }


def write_hf_dir(out, cfg, tensors, pieces, scores, dtype, shards):
    os.makedirs(out, exist_ok=True)
    torch_dtype = {'F32': 'float32', 'F16': 'float16', 'BF16': 'bfloat16'}[dtype]
    write_json(os.path.join(out, 'config.json'), hf_config(cfg, torch_dtype))
    write_json(os.path.join(out, 'generation_config.json'),
               {'bos_token_id': BOS_ID, 'eos_token_id': EOS_ID})
    write_json(os.path.join(out, 'tokenizer.json'), hf_tokenizer_json(pieces, scores, shards > 1))
    write_json(os.path.join(out, 'tokenizer_config.json'), hf_tokenizer_config(cfg))
    write_json(os.path.join(out, 'special_tokens_map.json'),
               {'bos_token': '<s>', 'eos_token': '</s>', 'unk_token': '<unk>'})
    if shards == 1:
        write_safetensors(os.path.join(out, 'model.safetensors'), tensors, dtype)
        return
    # Layers 0..1 and the embedding in the first shard, the rest in the second.
    names = sorted(tensors)
    first = [n for n in names if n == 'model.embed_tokens.weight'
             or n.startswith('model.layers.0.') or n.startswith('model.layers.1.')]
    groups = [first, [n for n in names if n not in first]]
    weight_map, total = {}, 0
    for k, group in enumerate(groups):
        fname = 'model-%05d-of-%05d.safetensors' % (k + 1, len(groups))
        total += write_safetensors(os.path.join(out, fname), {n: tensors[n] for n in group}, dtype)
        for n in group:
            weight_map[n] = fname
    write_json(os.path.join(out, 'model.safetensors.index.json'),
               {'metadata': {'total_size': total},
                'weight_map': {n: weight_map[n] for n in sorted(weight_map)}})


# ---------------------------------------------------------------- GGUF

GGUF_ALIGNMENT = 32
GGUF_UINT32, GGUF_INT32, GGUF_FLOAT32, GGUF_BOOL, GGUF_STRING, GGUF_ARRAY = 4, 5, 6, 7, 8, 9
GGML_F32, GGML_F16, GGML_Q8_0 = 0, 1, 8
FILE_TYPES = {'f32': 0, 'f16': 1, 'q8_0': 7}   # llama_ftype: ALL_F32, MOSTLY_F16, MOSTLY_Q8_0


def gguf_string(s):
    b = s.encode('utf-8')
    return struct.pack('<Q', len(b)) + b


def gguf_value(vtype, value):
    if vtype == GGUF_UINT32:
        return struct.pack('<I', value)
    if vtype == GGUF_INT32:
        return struct.pack('<i', value)
    if vtype == GGUF_FLOAT32:
        return struct.pack('<f', value)
    if vtype == GGUF_BOOL:
        return struct.pack('<B', 1 if value else 0)
    if vtype == GGUF_STRING:
        return gguf_string(value)
    raise ValueError(vtype)


def gguf_kv(key, vtype, value, elem_type=None):
    out = gguf_string(key) + struct.pack('<I', vtype)
    if vtype != GGUF_ARRAY:
        return out + gguf_value(vtype, value)
    out += struct.pack('<IQ', elem_type, len(value))
    return out + b''.join(gguf_value(elem_type, v) for v in value)


def gguf_metadata(cfg, pieces, scores, ftype, name='stories260K', rope_theta=ROPE_THETA):
    u32, f32 = GGUF_UINT32, GGUF_FLOAT32
    return [
        gguf_kv('general.architecture', GGUF_STRING, 'llama'),
        gguf_kv('general.name', GGUF_STRING, name),
        gguf_kv('general.file_type', u32, FILE_TYPES[ftype]),
        gguf_kv('general.quantization_version', u32, 2),
        gguf_kv('llama.vocab_size', u32, cfg['vocab']),
        gguf_kv('llama.context_length', u32, cfg['seq_len']),
        gguf_kv('llama.embedding_length', u32, cfg['dim']),
        gguf_kv('llama.block_count', u32, cfg['n_layers']),
        gguf_kv('llama.feed_forward_length', u32, cfg['hidden']),
        gguf_kv('llama.rope.dimension_count', u32, cfg['head']),
        gguf_kv('llama.attention.head_count', u32, cfg['n_heads']),
        gguf_kv('llama.attention.head_count_kv', u32, cfg['n_kv']),
        gguf_kv('llama.attention.layer_norm_rms_epsilon', f32, RMS_EPS),
        gguf_kv('llama.rope.freq_base', f32, rope_theta),
        gguf_kv('tokenizer.ggml.model', GGUF_STRING, 'llama'),
        gguf_kv('tokenizer.ggml.tokens', GGUF_ARRAY, pieces, GGUF_STRING),
        gguf_kv('tokenizer.ggml.scores', GGUF_ARRAY, scores, GGUF_FLOAT32),
        gguf_kv('tokenizer.ggml.token_type', GGUF_ARRAY,
                [token_type(i) for i in range(len(pieces))], GGUF_INT32),
        gguf_kv('tokenizer.ggml.bos_token_id', u32, BOS_ID),
        gguf_kv('tokenizer.ggml.eos_token_id', u32, EOS_ID),
        gguf_kv('tokenizer.ggml.unknown_token_id', u32, UNK_ID),
        gguf_kv('tokenizer.ggml.add_bos_token', GGUF_BOOL, True),
        gguf_kv('tokenizer.ggml.add_eos_token', GGUF_BOOL, False),
    ]


def gguf_encode(shape, values, ftype):
    """(ggml type, bytes) of one tensor for a file of the given type."""
    if len(shape) == 1 or ftype == 'f32':
        return GGML_F32, f32_bytes(values)
    if ftype == 'q8_0' and shape[-1] % 32 == 0:
        return GGML_Q8_0, q8_0_bytes(values)
    return GGML_F16, f16_bytes(values)


def gguf_tensor_order(cfg):
    names = ['token_embd.weight']
    for l in range(cfg['n_layers']):
        names += ['blk.%d.%s.weight' % (l, n) for n in
                  ('attn_norm', 'attn_q', 'attn_k', 'attn_v', 'attn_output',
                   'ffn_norm', 'ffn_gate', 'ffn_down', 'ffn_up')]
    return names + ['output_norm.weight']


def gguf_tensor_info(name, shape, gtype, offset):
    dims = list(reversed(shape))   # ggml ne[0] is the innermost (column) dimension
    return (gguf_string(name) + struct.pack('<I', len(dims))
            + struct.pack('<%dQ' % len(dims), *dims) + struct.pack('<IQ', gtype, offset))


def gguf_head(kvs, infos):
    """Header, metadata and tensor infos, padded to where the tensor data starts."""
    head = b'GGUF' + struct.pack('<IQQ', 3, len(infos), len(kvs)) + b''.join(kvs) + b''.join(infos)
    return head + b'\0' * (-len(head) % GGUF_ALIGNMENT)


def write_gguf(path, cfg, tensors, pieces, scores, ftype):
    """GGUF v3: header, metadata, tensor infos, padding, 32-aligned tensor data."""
    kvs = gguf_metadata(cfg, pieces, scores, ftype)
    infos, blobs, offset = [], [], 0
    for name in gguf_tensor_order(cfg):
        shape, values = tensors[name]
        gtype, blob = gguf_encode(shape, values, ftype)
        infos.append(gguf_tensor_info(name, shape, gtype, offset))
        blob += b'\0' * (-len(blob) % GGUF_ALIGNMENT)
        blobs.append(blob)
        offset += len(blob)
    head = gguf_head(kvs, infos)
    with open(path, 'wb') as f:
        f.write(head)
        for blob in blobs:
            f.write(blob)


def main(argv):
    if len(argv) != 3:
        sys.exit('usage: convert.py SRC_DIR OUT_DIR')
    src, out = argv[1], argv[2]
    cfg, w = read_checkpoint(os.path.join(src, 'stories260K.bin'))
    raw_pieces, scores = read_tokenizer(os.path.join(src, 'tok512.bin'), cfg['vocab'])
    pieces = spm_pieces(raw_pieces)
    os.makedirs(out, exist_ok=True)
    hf = hf_tensors(cfg, w)
    write_hf_dir(os.path.join(out, 'hf'), cfg, hf, pieces, scores, 'F32', 1)
    write_hf_dir(os.path.join(out, 'hf-sharded'), cfg, hf, pieces, scores, 'F32', 2)
    write_hf_dir(os.path.join(out, 'hf-bf16'), cfg, hf, pieces, scores, 'BF16', 1)
    write_hf_dir(os.path.join(out, 'hf-f16'), cfg, hf, pieces, scores, 'F16', 1)
    gg = gguf_tensors(cfg, w)
    for ftype in ('f32', 'f16', 'q8_0'):
        write_gguf(os.path.join(out, 'stories260K-%s.gguf' % ftype), cfg, gg, pieces, scores, ftype)


if __name__ == '__main__':
    main(sys.argv)
