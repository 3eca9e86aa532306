// encode_hf.mjs - encode the corpus with transformers.js and @lenml/tokenizers.
//
// usage: node encode_hf.mjs TOKENIZER_DIR CORPUS_JSONL OUT_PREFIX
//
// TOKENIZER_DIR holds tokenizer.json and tokenizer_config.json. Both libraries
// load them from disk only (transformers.js with remote models disabled).
// Texts are encoded with add_special_tokens false: no BOS/EOS is added, but
// added tokens written in the text (e.g. "<|endoftext|>") are still matched,
// as Hugging Face tokenizers do.
//
// Writes OUT_PREFIX.ids (transformers.js, the reference), OUT_PREFIX.lenml.ids
// (the cross-check) and OUT_PREFIX.decode.txt (transformers.js's decode of the
// first DECODE_LINES id lines, special tokens kept, no clean-up of spaces,
// escaped like corpus.txt). Must be run with its node_modules reachable
// (make_fixtures.sh runs it from the npm scratch directory).
import fs from 'node:fs';
import path from 'node:path';
import { AutoTokenizer, env } from '@huggingface/transformers';
import { TokenizerLoader } from '@lenml/tokenizers';

const DECODE_LINES = 200;

function readCorpus(file) {
	return fs.readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l));
}

// The escaping of corpus.txt: \\, \n, \t, \r and \xNN for other ASCII controls.
function escapeLine(text) {
	let out = '';
	for (const ch of text) {
		const c = ch.codePointAt(0);
		if (ch === '\\') out += '\\\\';
		else if (ch === '\n') out += '\\n';
		else if (ch === '\t') out += '\\t';
		else if (ch === '\r') out += '\\r';
		else if (c < 0x20 || c === 0x7f) out += '\\x' + c.toString(16).padStart(2, '0');
		else out += ch;
	}
	return out;
}

const [dir, corpusFile, outPrefix] = process.argv.slice(2);
const absDir = path.resolve(dir);
const texts = readCorpus(corpusFile);

env.allowRemoteModels = false;
env.allowLocalModels = true;
env.localModelPath = path.dirname(absDir) + '/';
const hf = await AutoTokenizer.from_pretrained(path.basename(absDir));

const lenml = TokenizerLoader.fromPreTrained({
	tokenizerJSON: JSON.parse(fs.readFileSync(path.join(absDir, 'tokenizer.json'), 'utf8')),
	tokenizerConfig: JSON.parse(fs.readFileSync(path.join(absDir, 'tokenizer_config.json'), 'utf8')),
});

const hfIds = texts.map((t) => hf.encode(t, { add_special_tokens: false }));
const lenmlIds = texts.map((t) => lenml.encode(t, { add_special_tokens: false }));
// transformers.js refuses an empty id list; its decode is the empty string.
const decoded = hfIds.slice(0, DECODE_LINES).map((ids) => ids.length === 0 ? '' :
	hf.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false }));

const lines = (rows) => rows.map((ids) => ids.join(' ') + '\n').join('');
fs.writeFileSync(outPrefix + '.ids', lines(hfIds));
fs.writeFileSync(outPrefix + '.lenml.ids', lines(lenmlIds));
fs.writeFileSync(outPrefix + '.decode.txt', decoded.map((t) => escapeLine(t) + '\n').join(''));
console.error(`${path.basename(outPrefix)}: ${texts.length} texts, ${hf.constructor.name}, ` +
	`${hfIds.reduce((n, ids) => n + ids.length, 0)} ids`);
