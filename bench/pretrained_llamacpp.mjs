// bench/pretrained_llamacpp.mjs - llama.cpp's side of bench/pretrained: the
// same greedy generations that the benchmark times in distill, through
// node-llama-cpp (installed outside the repository; NODE_PATH names its
// node_modules).
//
//   node bench/pretrained_llamacpp.mjs MODEL.gguf THREADS REPEAT TOKENS PROMPT TEXT_OUT
//
// THREADS is a space-separated list ("1 2").  For each thread count, REPEAT
// times: a generation of 1 token after the prompt (its time is the prompt's
// processing: the first token comes out of the prompt's last logits), then
// one of TOKENS tokens; the decoding time per token of that run is the
// difference over TOKENS - 1.  The times include tokenizing and detokenizing,
// as distill.generate's do.  Prints, per thread count:
//
//   threads prompt_tokens prompt_ms decode_ms_per_token
//
// (medians over the runs), then `rss_kb` and the process's peak RSS
// (VmHWM: node, llama.cpp and the file's pages it mapped).  The text of the
// last TOKENS-token generation goes to TEXT_OUT.
//
// Settings as in scripts/pretrained/llamacpp_reference.mjs: CPU only, never
// compile (build "never"), F32 KV cache, no flash attention, greedy
// (temperature 0); the generation never stops at an end token: TOKENS tokens
// are always decoded.  maxThreads 0 makes the context use exactly the
// threads it is given.
import {createRequire} from "node:module";
import fs from "node:fs";
import path from "node:path";
import {performance} from "node:perf_hooks";

const require = createRequire(path.join(process.env.NODE_PATH ?? process.cwd(), "x"));
const {getLlama, LlamaLogLevel} = await import(require.resolve("node-llama-cpp"));

function median(xs) {
    const s = [...xs].sort((a, b) => a - b);
    const m = s.length >> 1;
    return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function promptTokens(model, text) {
    const ids = model.tokenize(text, false);
    return model.tokens.shouldPrependBosToken ? [model.tokens.bos, ...ids] : ids;
}

// Milliseconds to tokenize the prompt and generate n tokens, and their text.
async function generate(sequence, model, prompt, n) {
    const t0 = performance.now();
    const ids = promptTokens(model, prompt);
    const out = [];
    for await (const token of sequence.evaluate(ids, {temperature: 0, yieldEogToken: true})) {
        out.push(token);
        if (out.length >= n)
            break;
    }
    const text = model.detokenize(out, false);
    const ms = performance.now() - t0;
    await sequence.clearHistory();
    return {ms, text, promptLength: ids.length};
}

function peakRssKb() {
    const m = /VmHWM:\s*(\d+)/.exec(fs.readFileSync("/proc/self/status", "utf8"));
    return m ? Number(m[1]) : -1;
}

async function main() {
    const [modelPath, threadList, repeatArg, tokensArg, prompt, textOut] = process.argv.slice(2);
    if (!textOut) {
        console.error("usage: pretrained_llamacpp.mjs MODEL.gguf THREADS REPEAT TOKENS PROMPT TEXT_OUT");
        process.exit(2);
    }
    const repeat = Number(repeatArg);
    const tokens = Number(tokensArg);
    const llama = await getLlama({gpu: false, maxThreads: 0, build: "never", logLevel: LlamaLogLevel.error});
    const model = await llama.loadModel({modelPath, gpuLayers: 0});
    let lastText = "";
    for (const threads of threadList.trim().split(/\s+/).map(Number)) {
        const context = await model.createContext({
            contextSize: 2048, batchSize: 512, sequences: 1, threads,
            flashAttention: false,
            experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32",
        });
        const sequence = context.getSequence();
        await generate(sequence, model, prompt, 2);	// warm up
        const promptMs = [];
        const decodeMs = [];
        let promptLength = 0;
        for (let r = 0; r < repeat; r++) {
            const one = await generate(sequence, model, prompt, 1);
            const many = await generate(sequence, model, prompt, tokens);
            promptMs.push(one.ms);
            decodeMs.push((many.ms - one.ms) / (tokens - 1));
            promptLength = one.promptLength;
            lastText = many.text;
        }
        console.log([threads, promptLength, median(promptMs).toFixed(2), median(decodeMs).toFixed(3)].join(" "));
        sequence.dispose();
        await context.dispose();
    }
    console.log("rss_kb " + peakRssKb());
    fs.writeFileSync(textOut, lastText);
    await model.dispose();
    await llama.dispose();
}

await main();
