// Greedy generations of llama.cpp (through node-llama-cpp) on the GGUF files
// that convert.py makes of stories260K, as a golden file for distill's GGUF
// import: test/data/pretrained/llamacpp_stories260K.json.
//
// Usage (node-llama-cpp installed outside the repository, see
// test/data/pretrained/README.md):
//   NODE_PATH=/work/npm-llama/node_modules node scripts/pretrained/llamacpp_reference.mjs \
//       build/pretrained test/data/pretrained/llamacpp_stories260K.json
//
// The decoding follows test/data/stories260K/reference.py and llama2.c's
// `run -t 0`: "steps" positions in all, the BOS and the prompt tokens
// included; token t at position p predicts position p + 1; generation stops
// early at a BOS or an EOS (neither is kept).  One thread, CPU only, an F32 KV
// cache, so that the only rounding beyond the weights is llama.cpp's own
// float32 arithmetic.  For each generated token the log of the ratio of the
// two largest probabilities (the top-2 logit margin: softmax keeps logit
// differences) is recorded, so that a later reader can tell a close call from
// a real departure.
import {createRequire} from "node:module";
import fs from "node:fs";
import path from "node:path";

const require = createRequire(path.join(process.env.NODE_PATH ?? process.cwd(), "x"));
const {getLlama, LlamaLogLevel} = await import(require.resolve("node-llama-cpp"));

const FILES = ["stories260K-f32.gguf", "stories260K-f16.gguf", "stories260K-q8_0.gguf"];
const PROMPTS = [
    {name: "bos_200", prompt: "", steps: 200},
    {name: "zoo_60", prompt: "Zoo", steps: 60},
    {name: "prompt_120", prompt: "The little dog", steps: 120},
];

function promptTokens(model, text) {
    const ids = text === "" ? [] : model.tokenize(text, false);
    return model.tokens.shouldPrependBosToken ? [model.tokens.bos, ...ids] : ids;
}

function topTwoMargin(probabilities) {
    const it = probabilities.values();
    const p1 = it.next().value;
    const p2 = it.next().value;
    return Math.log(p1) - Math.log(p2);
}

async function generate(context, model, {prompt, steps}) {
    const sequence = context.getSequence();
    const ids = promptTokens(model, prompt);
    const generated = [];
    const margins = [];
    const stops = new Set([model.tokens.bos, model.tokens.eos]);
    const budget = steps - (ids.length - 1);
    if (budget > 0) {
        const run = sequence.evaluateWithMetadata(ids, {probabilities: true},
            {temperature: 0, yieldEogToken: true});
        for await (const {token, probabilities} of run) {
            if (stops.has(token))
                break;
            generated.push(token);
            margins.push(Number(topTwoMargin(probabilities).toFixed(6)));
            if (generated.length >= budget)
                break;
        }
    }
    sequence.dispose();
    const text = model.detokenize([...ids.slice(1), ...generated], false);
    return {prompt, steps, prompt_ids: ids, generated_ids: generated, text, top2_margins: margins};
}

function packageJson(entry) {
    for (let dir = path.dirname(entry); dir !== path.dirname(dir); dir = path.dirname(dir)) {
        const file = path.join(dir, "package.json");
        if (fs.existsSync(file)) {
            const pkg = JSON.parse(fs.readFileSync(file, "utf8"));
            if (pkg.name === "node-llama-cpp")
                return pkg;
        }
    }
    throw new Error("no package.json of node-llama-cpp above " + entry);
}

async function main() {
    const [dir, outPath] = process.argv.slice(2);
    if (!dir || !outPath) {
        console.error("usage: llamacpp_reference.mjs GGUF_DIR OUT.json");
        process.exit(2);
    }
    const llama = await getLlama({gpu: false, maxThreads: 1, build: "never", logLevel: LlamaLogLevel.error});
    const pkg = packageJson(require.resolve("node-llama-cpp"));
    const out = {
        generator: "scripts/pretrained/llamacpp_reference.mjs",
        node_llama_cpp: pkg.version,
        llama_cpp_release: llama.llamaCppRelease?.release ?? null,
        settings: {threads: 1, gpu: false, kv_cache: "F32", temperature: 0, context_size: 512, batch_size: 512},
        results: {},
    };
    for (const file of FILES) {
        const model = await llama.loadModel({modelPath: path.join(dir, file), gpuLayers: 0});
        const context = await model.createContext({
            contextSize: 512, batchSize: 512, sequences: 1, threads: 1,
            flashAttention: false,
            experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32",
        });
        out.results[file] = {};
        for (const p of PROMPTS)
            out.results[file][p.name] = await generate(context, model, p);
        await context.dispose();
        await model.dispose();
    }
    fs.writeFileSync(outPath, JSON.stringify(out, null, 1) + "\n");
    await llama.dispose();
}

await main();
