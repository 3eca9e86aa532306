#!/usr/bin/python3
"""
make_llama2_json.py - Meta's Llama 2 tokenizer (a SentencePiece BPE
tokenizer.model) as a Hugging Face tokenizer.json, in the layout Hugging Face
uses for Llama 2 ("legacy" Llama tokenizer).

The pieces and scores are read with Debian's python3-sentencepiece. A
SentencePiece BPE model has no merge list, only scored pieces; its encoder
merges the adjacent pair whose concatenation is the best-scored piece. The
merge list here is therefore: for every normal piece, every way of cutting it
into two pieces that are both in the vocabulary, ranked by the merged piece's
score (best first; ties by the merged piece's id, then the left and right
pieces' ids). Control, unknown and byte pieces are never merge results, so BPE
cannot spell "<s>" out of text.

The normalizer puts "\u2581" before the text and replaces each space with
"\u2581"; there is no pre-tokenizer; unknown characters fall back to byte pieces
<0xNN>; <unk>, <s> and </s> are the added special tokens.

usage: make_llama2_json.py TOKENIZER_MODEL OUT_DIR
"""
import json
import os
import sys

import sentencepiece


def read_model(path):
	sp = sentencepiece.SentencePieceProcessor(model_file=path)
	n = sp.get_piece_size()
	pieces = [sp.id_to_piece(i) for i in range(n)]
	scores = [sp.get_score(i) for i in range(n)]
	normal = [not (sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i) or sp.is_unused(i))
		for i in range(n)]
	specials = [i for i in range(n) if sp.is_control(i) or sp.is_unknown(i)]
	return pieces, scores, normal, specials


def make_merges(pieces, scores, normal):
	ids = {p: i for i, p in enumerate(pieces)}
	ranked = []
	for i, piece in enumerate(pieces):
		if not normal[i]:
			continue
		for cut in range(1, len(piece)):
			left, right = piece[:cut], piece[cut:]
			if left in ids and right in ids:
				ranked.append((-scores[i], i, ids[left], ids[right], left + " " + right))
	ranked.sort()
	return [r[4] for r in ranked]


def main():
	model_path, out_dir = sys.argv[1:3]
	pieces, scores, normal, specials = read_model(model_path)
	assert all(" " not in p for p in pieces), "a piece with a space cannot be written as an 'a b' merge"
	merges = make_merges(pieces, scores, normal)
	tokenizer = {
		"version": "1.0",
		"truncation": None,
		"padding": None,
		"added_tokens": [{
			"id": i, "content": pieces[i], "single_word": False, "lstrip": False,
			"rstrip": False, "normalized": False, "special": True,
		} for i in specials],
		"normalizer": {"type": "Sequence", "normalizers": [
			{"type": "Prepend", "prepend": "\u2581"},
			{"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
		]},
		"pre_tokenizer": None,
		"post_processor": {
			"type": "TemplateProcessing",
			"single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
			"pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
				{"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
			"special_tokens": {"<s>": {"id": "<s>", "ids": [pieces.index("<s>")], "tokens": ["<s>"]}},
		},
		"decoder": {"type": "Sequence", "decoders": [
			{"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
			{"type": "ByteFallback"},
			{"type": "Fuse"},
			{"type": "Strip", "content": " ", "start": 1, "stop": 0},
		]},
		"model": {
			"type": "BPE", "dropout": None, "unk_token": "<unk>",
			"continuing_subword_prefix": None, "end_of_word_suffix": None,
			"fuse_unk": True, "byte_fallback": True,
			"vocab": {p: i for i, p in enumerate(pieces)}, "merges": merges,
		},
	}
	config = {
		"tokenizer_class": "LlamaTokenizer",
		"legacy": True,
		"add_bos_token": True, "add_eos_token": False,
		"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": None,
		"clean_up_tokenization_spaces": False,
		"spaces_between_special_tokens": False,
		"model_max_length": 4096,
	}
	with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
		json.dump(tokenizer, f, ensure_ascii=False, separators=(",", ":"))
		f.write("\n")
	with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
		json.dump(config, f, ensure_ascii=False, indent=2)
		f.write("\n")
	print(f"llama2: {len(pieces)} pieces, {len(merges)} merges", file=sys.stderr)


if __name__ == "__main__":
	main()
