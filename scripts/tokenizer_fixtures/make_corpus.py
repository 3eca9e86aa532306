#!/usr/bin/python3
"""
make_corpus.py - the text corpus the tokenizer fixtures are made from.

Writes corpus.jsonl (one JSON string per line) and corpus.txt (the same texts,
one per line, escaped so that a C test needs no JSON parser; see
test/data/tokenizers/README.md for the escape rules).

The corpus is the hand-written hard cases below, then a deterministic sample of
the task datasets: per task (cqa, svamp), the distinct `input` texts of train
and test together, ordered by the SHA-256 of their UTF-8 bytes, the first
INPUTS_PER_TASK of them; then the same for `teacher_output`, the first
OUTPUTS_PER_TASK. A text already in the corpus is not repeated.

usage: make_corpus.py SHARED_DATA_DIR OUT_DIR
"""
import hashlib
import json
import os
import sys

INPUTS_PER_TASK = 900
OUTPUTS_PER_TASK = 100
TASKS = ("cqa", "svamp")
SPLITS = ("train", "test")

# Texts that exercise the corners of pre-tokenizers, normalizers and BPE.
# No NUL: PostgreSQL text cannot hold one, so the tokenizer never sees it.
# No lone surrogates: they are not valid UTF-8 (the README lists invalid byte
# strings separately).
HARD_CASES = [
	"",
	" ",
	"  ",
	"   ",
	"    ",
	"     ",
	"      ",
	"       ",
	"        ",
	"\n",
	"\n\n",
	"\n\n\n",
	"\t",
	"\t\t",
	"\r\n",
	"a\r\nb",
	" \n \n ",
	"a b",
	"a  b",
	"a   b",
	"a    b",
	"a        b",
	"a\tb",
	"a\t\tb",
	"a \tb",
	"a\n\nb",
	"a \n b",
	"a\n  b",
	"  leading spaces",
	"trailing spaces  ",
	"   both   ",
	"\tleading tab",
	"trailing newline\n",
	"\n\nleading newlines",
	"Hello world",
	"Hello, world!",
	"hello    world    with    runs",
	"line one\nline two\n\nline four\n",
	"def f(x):\n    return x + 1\n",
	"if (a) {\n\tb();\n}",
	"0",
	"7",
	"42",
	"123",
	"1234",
	"123456789",
	"1234567890123456789012345678901234567890",
	"3.14",
	"3.14159265358979",
	"-273.15",
	"1,000",
	"1,000,000",
	"1e-10",
	"0x1F",
	"2024-01-31",
	"12:30:45",
	"$1,234.56",
	"50%",
	"room 101b, floor 3rd",
	"don't",
	"Don't",
	"DON'T",
	"I'M",
	"I'm",
	"we'll",
	"WE'LL",
	"they've",
	"THEY'VE",
	"she'd",
	"you're",
	"it's",
	"IT'S",
	"John's",
	"JOHN'S",
	"'s",
	"'S",
	"'t",
	"''",
	"'",
	"rock 'n' roll",
	"don\u2019t",
	"caf\u00e9",
	"cafe\u0301",
	"na\u00efve",
	"nai\u0308ve",
	"\u00c5ngstr\u00f6m",
	"\u212bngstr\u00f6m",
	"A\u030angstro\u0308m",
	"\u00e9\u00e8\u00ea\u00eb",
	"e\u0301e\u0300e\u0302e\u0308",
	"Stra\u00dfe",
	"\u0130stanbul",
	"\ufb01ne",
	"\u2460\u2461\u2462",
	"\u00bd \u00b2 \u2167",
	"\uff11\uff12\uff13",
	"\u0663\u0664\u0665",
	"\u4e2d\u6587",
	"\u65e5\u672c\u8a9e",
	"\ud55c\uad6d\uc5b4",
	"\u1112\u1161\u11ab\u1100\u116e\u11a8\u110b\u1165",
	"\u4f60\u597d\uff0c\u4e16\u754c\uff01",
	"\u3053\u3093\u306b\u3061\u306f\u3001\u4e16\u754c\u3002",
	"\u0417\u0434\u0440\u0430\u0432\u0441\u0442\u0432\u0443\u0439, \u043c\u0438\u0440",
	"\u039a\u03b1\u03bb\u03b7\u03bc\u03ad\u03c1\u03b1",
	"\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",
	"\u05e9\u05dc\u05d5\u05dd",
	"\u0928\u092e\u0938\u094d\u0924\u0947",
	"\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35",
	"\U0001d518\U0001d52b\U0001d526\U0001d520\U0001d52c\U0001d521\U0001d522",
	"\U00020b9f",
	"Hello \u4e16\u754c and \u043c\u0438\u0440 and \u0645\u0631\u062d\u0628\u0627 123",
	"English\u4e2d\u6587\u65e5\u672c\u8a9e\ud55c\uad6d\uc5b4",
	"\U0001f600",
	"\U0001f44d",
	"\U0001f44d\U0001f3fd",
	"\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466",
	"\U0001f3f3\ufe0f\u200d\U0001f308",
	"\U0001f1eb\U0001f1f7\U0001f1ef\U0001f1f5",
	"\u2764\ufe0f",
	"1\ufe0f\u20e3",
	"I \u2764\ufe0f NY \U0001f5fd!!",
	"<|endoftext|>",
	"text<|endoftext|>more text",
	"a <|endoftext|> b",
	"<|endoftext|><|endoftext|>",
	"<|endoftext",
	"<s>",
	"</s>",
	"<s>hello</s>",
	"a <s> b </s> c",
	"<unk>",
	"<|begin_of_text|>",
	"<|begin_of_text|>Hello",
	"<|end_of_text|>",
	"<|eot_id|>",
	"<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>",
	"<|im_start|>user\nhi<|im_end|>",
	"< s >",
	"\u2581",
	"\u2581\u2581hello",
	"<0x41>",
	"a" * 200,
	"Pneumonoultramicroscopicsilicovolcanoconiosis" * 4 + "x" * 20,
	"ab" * 100,
	"\u00e9" * 100,
	"\u4e2d" * 100,
	"9" * 200,
	"." * 50,
	"!!!???...",
	"--- *** ===",
	"#include <stdio.h>",
	"https://example.com/path?q=1&r=2#frag",
	"user@example.com",
	"C:\\Users\\name\\file.txt",
	"\"quoted\" and 'single'",
	"(a) b\n(b) c\n(c) d",
	"\x01\x02\x03",
	"bell\x07and escape\x1b[0m",
	"del\x7fchar",
	"vertical\x0btab and form\x0cfeed",
	"next\u0085line",
	"no\u00a0break space",
	"ideographic\u3000space",
	"line\u2028separator",
	"zero\u200bwidth",
	"\ufeffbyte order mark",
	"replacement \ufffd char",
	"private \ue000 use",
	"soft\u00adhyphen",
]


def sha256_order(texts):
	return sorted(texts, key=lambda t: hashlib.sha256(t.encode("utf-8")).hexdigest())


def read_field(data_dir, task, field):
	texts = set()
	for split in SPLITS:
		with open(os.path.join(data_dir, f"{task}_{split}.jsonl"), encoding="utf-8") as f:
			for line in f:
				texts.add(json.loads(line)[field])
	return texts


def build_corpus(data_dir):
	corpus = []
	seen = set()

	def add(text):
		if text not in seen:
			seen.add(text)
			corpus.append(text)

	for text in HARD_CASES:
		add(text)
	for field, cap in (("input", INPUTS_PER_TASK), ("teacher_output", OUTPUTS_PER_TASK)):
		for task in TASKS:
			for text in sha256_order(read_field(data_dir, task, field))[:cap]:
				add(text)
	return corpus


def escape_line(text):
	"""The text as one line: \\\\, \\n, \\t, \\r, and \\xNN for other ASCII controls."""
	out = bytearray()
	for b in text.encode("utf-8"):
		if b == 0x5C:
			out += b"\\\\"
		elif b == 0x0A:
			out += b"\\n"
		elif b == 0x09:
			out += b"\\t"
		elif b == 0x0D:
			out += b"\\r"
		elif b < 0x20 or b == 0x7F:
			out += b"\\x%02x" % b
		else:
			out.append(b)
	return bytes(out)


def main():
	data_dir, out_dir = sys.argv[1], sys.argv[2]
	corpus = build_corpus(data_dir)
	for text in corpus:
		text.encode("utf-8")	# raises on a lone surrogate
		assert "\0" not in text
	with open(os.path.join(out_dir, "corpus.jsonl"), "w", encoding="utf-8", newline="\n") as f:
		for text in corpus:
			f.write(json.dumps(text, ensure_ascii=True) + "\n")
	with open(os.path.join(out_dir, "corpus.txt"), "wb") as f:
		for text in corpus:
			f.write(escape_line(text) + b"\n")
	print(f"corpus: {len(corpus)} texts ({len(HARD_CASES)} hard cases)", file=sys.stderr)


if __name__ == "__main__":
	main()
