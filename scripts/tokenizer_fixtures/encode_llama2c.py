#!/usr/bin/python3
"""
encode_llama2c.py - an independent Python re-implementation of the encoder of
llama2.c (karpathy/llama2.c, run.c), for tokenizers in its tokenizer.bin
format. Written here from the algorithm's description, not from run.c's code.

The format: int32 max_token_length, then per token until the end of the file
a float32 score, an int32 byte length and the bytes (little-endian).

The algorithm, for a text without BOS/EOS:
  1. if the text is not empty, start with the id of the one-space token " "
     (SentencePiece's dummy prefix);
  2. for each UTF-8 character of the text, the id of the token spelling it; a
     character with no token becomes one token per byte, id = byte + 3;
  3. repeatedly merge the adjacent pair whose concatenation is a token with the
     highest score (the leftmost pair on a tie), until no pair is a token.

This is a reference only in a weak sense: it is a second implementation of the
same algorithm, not the original program. It is checked against SentencePiece
on the Llama 2 vocabulary (see crosscheck.txt).

usage: encode_llama2c.py TOKENIZER_BIN CORPUS_JSONL OUT.ids
"""
import json
import struct
import sys


def read_vocab(path):
	with open(path, "rb") as f:
		data = f.read()
	(max_len,) = struct.unpack_from("<i", data, 0)
	pos = 4
	pieces, scores = [], []
	while pos < len(data):
		score, length = struct.unpack_from("<fi", data, pos)
		pos += 8
		if length < 0 or pos + length > len(data):
			raise ValueError(f"token {len(pieces)}: bad length {length}")
		pieces.append(data[pos:pos + length])
		scores.append(score)
		pos += length
	assert max(len(p) for p in pieces) <= max_len
	return pieces, scores


def build_lookup(pieces):
	"""bytes -> id; a piece spelled twice keeps its lowest id (and is reported)."""
	lookup = {}
	for i, p in enumerate(pieces):
		if p in lookup:
			print(f"duplicate piece {p!r}: ids {lookup[p]} and {i}", file=sys.stderr)
			continue
		lookup[p] = i
	return lookup


def encode(text, pieces, scores, lookup):
	ids = []
	if text:
		ids.append(lookup[b" "])
	for ch in text:
		b = ch.encode("utf-8")
		if b in lookup:
			ids.append(lookup[b])
		else:
			ids.extend(x + 3 for x in b)
	while True:
		best, best_at = None, -1
		for i in range(len(ids) - 1):
			merged = lookup.get(pieces[ids[i]] + pieces[ids[i + 1]])
			if merged is not None and (best is None or scores[merged] > scores[best]):
				best, best_at = merged, i
		if best is None:
			return ids
		ids[best_at:best_at + 2] = [best]


def main():
	bin_path, corpus_path, out_path = sys.argv[1:4]
	pieces, scores = read_vocab(bin_path)
	lookup = build_lookup(pieces)
	with open(corpus_path, encoding="utf-8") as f:
		texts = [json.loads(line) for line in f if line != "\n"]
	with open(out_path, "w", encoding="ascii") as out:
		for text in texts:
			out.write(" ".join(map(str, encode(text, pieces, scores, lookup))) + "\n")
	print(f"llama2.c encoder: {len(texts)} texts, vocab {len(pieces)}", file=sys.stderr)


if __name__ == "__main__":
	main()
