// Token ids of a set of strings under the stories260K tokenizer, as two public
// implementations compute them from the files convert.py writes: Hugging Face
// tokenizers.js on hf/tokenizer.json (+ tokenizer_config.json), and llama.cpp
// (node-llama-cpp) on stories260K-f32.gguf.  Golden file for distill's import
// of tokenizer.json / GGUF vocabularies: test/data/pretrained/tokenizer_stories260K.json.
//
// Usage (packages installed outside the repository, see test/data/pretrained/README.md):
//   NODE_PATH=/work/npm-llama/node_modules node scripts/pretrained/tokenizer_reference.mjs \
//       build/pretrained test/data/stories260K test/data/pretrained/tokenizer_stories260K.json
//
// Both encodings put the BOS first, as the models' settings ask (HF: the
// TemplateProcessing post-processor; llama.cpp: add_bos_token).  llama.cpp
// parses the text with special-token parsing off (text "<s>" is text), while
// HF tokenizers always match added tokens in the text; the "<s>" string shows it.
import {createRequire} from "node:module";
import fs from "node:fs";
import path from "node:path";

const require = createRequire(path.join(process.env.NODE_PATH ?? process.cwd(), "x"));
const {getLlama, LlamaLogLevel} = await import(require.resolve("node-llama-cpp"));
// require.resolve picks the CommonJS build, whose exports arrive as `default`.
const hfModule = await import(require.resolve("@huggingface/tokenizers"));
const Tokenizer = hfModule.Tokenizer ?? hfModule.default.Tokenizer;

const STRINGS = [
    "", "Zoo", "The little dog", "a", " leading space", "trailing space ", "two  spaces",
    "\n", "Line one.\nLine two.", "tabs\tand\ttabs", "Lily's mom said, \"Lily, let's go to the park.\"",
    "ALL CAPS SHOUT", "12345 + 678 = 999", "naïve café", "日本語", "emoji 🙂!", "\u2581 is the SentencePiece space",
    "hair\u200aspace", "~[]|<>%\\", "<s> is a special token's text", "Once upon a time",
];

function readGolden(dir) {
    return ["gen_bos_200.txt", "gen_zoo_60.txt", "gen_prompt.txt"]
        .map((f) => fs.readFileSync(path.join(dir, f), "utf8").replace(/\n$/, ""));
}

async function main() {
    const [convDir, storiesDir, outPath] = process.argv.slice(2);
    if (!convDir || !storiesDir || !outPath) {
        console.error("usage: tokenizer_reference.mjs CONVERTED_DIR STORIES_DIR OUT.json");
        process.exit(2);
    }
    const hfDir = path.join(convDir, "hf");
    const hf = new Tokenizer(JSON.parse(fs.readFileSync(path.join(hfDir, "tokenizer.json"), "utf8")),
        JSON.parse(fs.readFileSync(path.join(hfDir, "tokenizer_config.json"), "utf8")));
    const llama = await getLlama({gpu: false, maxThreads: 1, build: "never", logLevel: LlamaLogLevel.error});
    const model = await llama.loadModel({modelPath: path.join(convDir, "stories260K-f32.gguf"), gpuLayers: 0});
    const cases = [];
    for (const text of [...STRINGS, ...readGolden(storiesDir)]) {
        const hfIds = hf.encode(text).ids;
        const lcIds = [model.tokens.bos, ...model.tokenize(text, false)];
        cases.push({
            text,
            hf_ids: hfIds,
            llamacpp_ids: lcIds,
            agree: JSON.stringify(hfIds) === JSON.stringify(lcIds),
            hf_decoded: hf.decode(hfIds, {skip_special_tokens: true}),
            llamacpp_decoded: model.detokenize(lcIds.slice(1), false),
        });
    }
    const out = {
        generator: "scripts/pretrained/tokenizer_reference.mjs",
        hf_tokenizers_js: "@huggingface/tokenizers 0.2.0",
        node_llama_cpp: "3.21.1",
        cases,
    };
    fs.writeFileSync(outPath, JSON.stringify(out, null, 1) + "\n");
    await model.dispose();
    await llama.dispose();
}

await main();
