// encode_gpt3enc.mjs - encode the corpus with the gpt-3-encoder package, the
// JavaScript port of OpenAI's GPT-2 encoder that reads encoder.json and
// vocab.bpe directly. It knows no special tokens: "<|endoftext|>" in a text is
// encoded as plain text.
//
// usage: node encode_gpt3enc.mjs CORPUS_JSONL OUT.ids
import fs from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { encode } = require('gpt-3-encoder');
const [corpusFile, out] = process.argv.slice(2);
const texts = fs.readFileSync(corpusFile, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l));
fs.writeFileSync(out, texts.map((t) => encode(t).join(' ') + '\n').join(''));
