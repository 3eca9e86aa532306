#!/bin/bash
# Regenerate the golden files of test/data/pretrained/ (run from the repository root).
#
# Needs: Debian's python3-torch and python3-numpy (/usr/bin/python3), node, and
# node-llama-cpp 3.21.1 + @huggingface/tokenizers 0.2.0 installed OUTSIDE the
# repository, e.g.
#   mkdir -p /work/npm-llama && cd /work/npm-llama && npm init -y &&
#   npm i -E node-llama-cpp@3.21.1 @huggingface/tokenizers@0.2.0
# then: NODE_PATH=/work/npm-llama/node_modules bash scripts/pretrained/regenerate.sh
#
# The tests need none of this: they run convert.py and make_random_hf.py (plain
# python3) and compare with the committed files.
set -euo pipefail

: "${NODE_PATH:?set NODE_PATH to the node_modules holding node-llama-cpp and @huggingface/tokenizers}"
export NODE_PATH
PY=/usr/bin/python3
STORIES=test/data/stories260K
OUT=test/data/pretrained
CONV=build/pretrained
RAND=build/random_hf

python3 scripts/pretrained/convert.py "$STORIES" "$CONV"
python3 scripts/pretrained/make_random_hf.py "$RAND"
(cd "$CONV" && find . -type f | LC_ALL=C sort | xargs sha256sum) > "$OUT/convert.sha256"
(cd "$RAND" && find . -type f | LC_ALL=C sort | xargs sha256sum) > "$OUT/random_hf.sha256"

node scripts/pretrained/llamacpp_reference.mjs "$CONV" "$OUT/llamacpp_stories260K.json"
node scripts/pretrained/tokenizer_reference.mjs "$CONV" "$STORIES" "$OUT/tokenizer_stories260K.json"
$PY scripts/pretrained/dequant_reference.py "$STORIES" "$CONV" "$OUT/dequant_stories260K.json"
$PY scripts/pretrained/torch_reference.py "$RAND" "$CONV" "$OUT/torch_logprobs.txt"

# Checks: llama.cpp on the F32 file and the float64 forward on every file's
# weights against the golden texts; the torch figures against numpy.
$PY scripts/pretrained/crosscheck_numpy.py "$STORIES" "$RAND" "$OUT/torch_logprobs.txt"
$PY - "$STORIES" "$OUT/llamacpp_stories260K.json" <<'EOF'
import json, sys
stories, path = sys.argv[1:]
golden = {'bos_200': 'gen_bos_200.txt', 'zoo_60': 'gen_zoo_60.txt', 'prompt_120': 'gen_prompt.txt'}
res = json.load(open(path))['results']['stories260K-f32.gguf']
bad = [k for k, f in golden.items() if res[k]['text'] + '\n' != open('%s/%s' % (stories, f)).read()]
print('llama.cpp F32 texts equal the golden texts' if not bad else 'llama.cpp F32 differs: %s' % bad)
sys.exit(1 if bad else 0)
EOF
