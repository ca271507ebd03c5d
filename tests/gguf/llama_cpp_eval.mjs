// llama_cpp_eval.mjs: runs a GGUF file with llama.cpp itself, through the prebuilt CPU binaries of
// the npm package node-llama-cpp (no compilation, no model downloads), and prints one JSON object:
//   {"greedy": [ids generated greedily after BOS], "nll": sum, "tokens": n, "ppl": exp(nll / n)}
// Perplexity follows `wquant eval`'s protocol on the sequences it dumped (--dump-ids): each line is
// one sequence evaluated from an empty context; every position 1..len-1 is predicted; the
// probability of the true next token comes from llama.cpp's logits (softmax over the whole
// vocabulary: greedy sampling applies no logit transform).
// Usage: node llama_cpp_eval.mjs NODE_MODULES_PARENT MODEL.gguf GREEDY_STEPS [IDS_FILE]
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [prefix, modelPath, stepsArg, idsFile] = process.argv.slice(2);
if (!prefix || !modelPath || stepsArg === undefined) {
    console.error("usage: node llama_cpp_eval.mjs NODE_MODULES_PARENT MODEL.gguf STEPS [IDS_FILE]");
    process.exit(2);
}
const nlc = await import(
    pathToFileURL(join(prefix, "node_modules", "node-llama-cpp", "dist", "index.js")).href);

// Prebuilt CPU binary only: never build llama.cpp, never download anything.
const llama = await nlc.getLlama({
    gpu: false,
    build: "never",
    usePrebuiltBinaries: true,
    skipDownload: true,
    progressLogs: false,
    logLevel: nlc.LlamaLogLevel.error,
    maxThreads: 1, // ggml threads spin: more threads than free cores is very slow on a shared machine
});
const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
const bos = model.tokens.bos;
const ctxLen = 512;
const context = await model.createContext({ contextSize: ctxLen, batchSize: ctxLen, sequences: 1, threads: 1 });
const seq = context.getSequence();

const greedy = [];
const steps = Number(stepsArg);
if (steps > 0) {
    // one token at a time with controlledEvaluate: argmax of the logits at the last position
    let input = [[bos, { generateNext: { token: true } }]];
    for (let s = 0; s < steps; s++) {
        const out = await seq.controlledEvaluate(input);
        const t = out[out.length - 1]?.next?.token;
        if (t == null) throw new Error(`no token generated at step ${s}`);
        greedy.push(t);
        input = [[t, { generateNext: { token: true } }]];
    }
    await seq.clearHistory();
}

let nll = 0, tokens = 0;
if (idsFile) {
    const lines = readFileSync(idsFile, "utf8").split("\n").filter((l) => l.trim().length);
    for (const line of lines) {
        const ids = line.trim().split(/\s+/).map(Number);
        if (ids.length > ctxLen) throw new Error(`sequence of ${ids.length} > context ${ctxLen}`);
        const input = ids.map((t, i) =>
            i + 1 < ids.length ? [t, { generateNext: { probabilities: true } }] : t);
        const out = await seq.controlledEvaluate(input);
        for (let i = 0; i + 1 < ids.length; i++) {
            const p = out[i]?.next?.probabilities?.get(ids[i + 1]);
            if (!(p > 0)) throw new Error(`no probability for token ${ids[i + 1]} at ${i}`);
            nll -= Math.log(p);
            tokens++;
        }
        await seq.clearHistory();
    }
}
console.log(JSON.stringify({ greedy, nll, tokens, ppl: tokens ? Math.exp(nll / tokens) : null }));
await context.dispose();
await model.dispose();
await llama.dispose();
