#!/usr/bin/python3
"""
make_gpt2_json.py - GPT-2's tokenizer as a Hugging Face tokenizer.json.

OpenAI released GPT-2's tokenizer as encoder.json (token -> id) and vocab.bpe
(the merges, in rank order, after a "#version" line). This writes the same
tokenizer in the tokenizer.json layout that Hugging Face uses for GPT-2: a
byte-level BPE with no normalizer, the ByteLevel pre-tokenizer with its
built-in GPT-2 regex (use_regex true, no prefix space), merges as "a b"
strings, and <|endoftext|> (50256) as the one added special token. It also
writes a minimal tokenizer_config.json.

usage: make_gpt2_json.py ENCODER_JSON VOCAB_BPE OUT_DIR
"""
import json
import os
import sys

EOT = "<|endoftext|>"


def read_merges(path):
	with open(path, encoding="utf-8") as f:
		lines = f.read().split("\n")
	assert lines[0].startswith("#version"), "vocab.bpe must start with a #version line"
	merges = []
	for line in lines[1:]:
		if line == "":
			continue
		parts = line.split(" ")
		assert len(parts) == 2 and all(parts), f"bad merge line {line!r}"
		merges.append(line)
	return merges


def byte_level(**kw):
	d = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
	d.update(kw)
	return d


def main():
	encoder_path, bpe_path, out_dir = sys.argv[1:4]
	with open(encoder_path, encoding="utf-8") as f:
		vocab = json.load(f)
	merges = read_merges(bpe_path)
	assert vocab[EOT] == len(vocab) - 1
	tokenizer = {
		"version": "1.0",
		"truncation": None,
		"padding": None,
		"added_tokens": [{
			"id": vocab[EOT], "content": EOT, "single_word": False, "lstrip": False,
			"rstrip": False, "normalized": True, "special": True,
		}],
		"normalizer": None,
		"pre_tokenizer": byte_level(),
		"post_processor": byte_level(trim_offsets=False),
		"decoder": byte_level(),
		"model": {
			"type": "BPE", "dropout": None, "unk_token": None,
			"continuing_subword_prefix": "", "end_of_word_suffix": "",
			"fuse_unk": False, "byte_fallback": False,
			"vocab": vocab, "merges": merges,
		},
	}
	config = {
		"tokenizer_class": "GPT2Tokenizer",
		"add_prefix_space": False,
		"bos_token": EOT, "eos_token": EOT, "unk_token": EOT,
		"clean_up_tokenization_spaces": False,
		"model_max_length": 1024,
	}
	with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
		json.dump(tokenizer, f, ensure_ascii=False, indent=None, separators=(",", ":"))
		f.write("\n")
	with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
		json.dump(config, f, ensure_ascii=False, indent=2)
		f.write("\n")
	print(f"gpt2: {len(vocab)} tokens, {len(merges)} merges", file=sys.stderr)


if __name__ == "__main__":
	main()
