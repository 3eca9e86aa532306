#!/usr/bin/python3
"""
encode_sp.py - encode the corpus with SentencePiece (Debian's
python3-sentencepiece) from a tokenizer.model file.

usage: encode_sp.py TOKENIZER_MODEL CORPUS_JSONL OUT.ids

No BOS/EOS is added. SentencePiece knows no special tokens in text: "<s>" in a
text is encoded as the characters '<', 's', '>'.
"""
import json
import sys

import sentencepiece


def main():
	model_path, corpus_path, out_path = sys.argv[1:4]
	sp = sentencepiece.SentencePieceProcessor(model_file=model_path)
	with open(corpus_path, encoding="utf-8") as f:
		texts = [json.loads(line) for line in f if line != "\n"]
	with open(out_path, "w", encoding="ascii") as out:
		for text in texts:
			ids = sp.encode(text, add_bos=False, add_eos=False)
			out.write(" ".join(map(str, ids)) + "\n")
	print(f"sentencepiece {sentencepiece.__version__}: {len(texts)} texts, vocab {sp.get_piece_size()}",
		file=sys.stderr)


if __name__ == "__main__":
	main()
