// encode_tiktoken.mjs - encode the corpus with OpenAI's tiktoken (the Rust
// crate compiled to WebAssembly, npm package "tiktoken"), given a byte-level
// BPE tokenizer.json.
//
// usage: node encode_tiktoken.mjs TOKENIZER_JSON CORPUS_JSONL OUT.ids [nfc]
//
// tiktoken has no merge list: it merges the adjacent pair whose concatenated
// bytes have the lowest rank, and here a token's rank is its id. That is the
// same BPE as the merge list whenever the merge ranks follow the ids, which is
// how these vocabularies were built; where not, the ids differ and
// crosscheck.txt says so. The split regex is the tokenizer.json's Split
// pattern, or GPT-2's pattern for a ByteLevel pre-tokenizer with use_regex.
// Added tokens in the text are matched (allowed_special "all"), as in Hugging
// Face tokenizers. "nfc" applies Unicode NFC first (Qwen's normalizer).
import fs from 'node:fs';
import { Tiktoken } from 'tiktoken/lite';

const GPT2_PATTERN = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

// GPT-2's map from the 256 byte values to printable characters, inverted.
function unicodeToByte() {
	const printable = [];
	for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
	for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
	for (let b = 0xae; b <= 0xff; b++) printable.push(b);
	const map = new Map();
	let extra = 0;
	for (let b = 0; b < 256; b++) {
		const cp = printable.includes(b) ? b : 256 + extra++;
		map.set(String.fromCodePoint(cp), b);
	}
	return map;
}

function splitPattern(pre) {
	if (pre.type === 'ByteLevel' && pre.use_regex) return GPT2_PATTERN;
	if (pre.type === 'Sequence') {
		for (const p of pre.pretokenizers) {
			if (p.type === 'Split') return p.pattern.Regex;
		}
	}
	throw new Error('no split pattern in the pre-tokenizer');
}

const [jsonFile, corpusFile, out, mode] = process.argv.slice(2);
const tok = JSON.parse(fs.readFileSync(jsonFile, 'utf8'));
const toByte = unicodeToByte();
const ranks = Object.entries(tok.model.vocab)
	.sort((a, b) => a[1] - b[1])
	.map(([piece, id]) => Buffer.from([...piece].map((ch) => toByte.get(ch))).toString('base64') + ' ' + id)
	.join('\n');
const specials = Object.fromEntries(tok.added_tokens.map((t) => [t.content, t.id]));
const enc = new Tiktoken(ranks, specials, splitPattern(tok.pre_tokenizer));
const texts = fs.readFileSync(corpusFile, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l));
const rows = texts.map((t) => Array.from(enc.encode(mode === 'nfc' ? t.normalize('NFC') : t, 'all')).join(' ') + '\n');
fs.writeFileSync(out, rows.join(''));
enc.free();
