#!/usr/bin/python3
"""
compare_ids.py - the corpus lines on which two .ids files disagree.

usage: compare_ids.py CORPUS_JSONL A.ids B.ids [LABEL]

Prints one summary line ("LABEL: N of M lines differ: 1-based line numbers")
and, for each differing line, the text and both id lists, to stdout. Exits 0
either way: a difference between references is a finding to report, not an
error. Exits 2 if the files do not have one line per corpus text.
"""
import json
import sys


def read_ids(path):
	with open(path, encoding="ascii") as f:
		return [line.rstrip("\n") for line in f]


def main():
	corpus_path, a_path, b_path = sys.argv[1:4]
	label = sys.argv[4] if len(sys.argv) > 4 else f"{a_path} vs {b_path}"
	with open(corpus_path, encoding="utf-8") as f:
		texts = [json.loads(line) for line in f if line != "\n"]
	a, b = read_ids(a_path), read_ids(b_path)
	if not (len(a) == len(b) == len(texts)):
		print(f"{label}: line counts differ: corpus {len(texts)}, {len(a)}, {len(b)}")
		sys.exit(2)
	diff = [i for i in range(len(texts)) if a[i] != b[i]]
	print(f"{label}: {len(diff)} of {len(texts)} lines differ" +
		(": lines " + " ".join(str(i + 1) for i in diff) if diff else ""))
	for i in diff:
		print(f"  line {i + 1}: text {json.dumps(texts[i], ensure_ascii=True)[:200]}")
		print(f"    A: {a[i][:300]}")
		print(f"    B: {b[i][:300]}")


if __name__ == "__main__":
	main()
