// make_tokjson_seeds.mjs: the fuzz/corpus/tokjson/ seeds: each tokenizer.json of
// tests/data/tok_json/ cut down to its first 24 merges (with the tokens they use, the byte tokens,
// the special tokens, renumbered), followed by "\n#TEXT#\n" and a text with the hard cases.
//   node fuzz/tools/make_tokjson_seeds.mjs      (fuzz/make_seeds.sh runs it when node is there)
import fs from "node:fs";
import path from "node:path";

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../..");
const SRC = path.join(ROOT, "tests/data/tok_json");
const OUT = path.join(ROOT, "fuzz/corpus/tokjson");
const TEXT = "Once upon a time, I'm  sure\t12345 caf\u00e9 cafe\u0301 \u1100\u1161\u11a8 q\u0307\u0323 \u4e2d\u6587 \ud83d\ude00\n\n x <|endoftext|><s></s>";
fs.mkdirSync(OUT, { recursive: true });
for (const f of ["gpt2.json", "llama3.json", "qwen2.json", "sp-legacy.json", "sp-metaspace.json"]) {
  const j = JSON.parse(fs.readFileSync(path.join(SRC, f), "utf8"));
  const m = j.model;
  const merges = m.merges.slice(0, 24);
  const pair = (x) => (Array.isArray(x) ? x : x.split(" "));
  const keep = new Set();
  const byId = Object.entries(m.vocab).sort((a, b) => a[1] - b[1]);
  for (const [tok, id] of byId) if (id < 256 + 3 && (Array.from(tok).length === 1 || /^<.*>$/.test(tok))) keep.add(tok);
  for (const x of merges) { const [a, b] = pair(x); keep.add(a); keep.add(b); keep.add(a + b); }
  for (const a of j.added_tokens) keep.add(a.content);
  const vocab = {};
  for (const [tok] of byId) if (keep.has(tok)) vocab[tok] = Object.keys(vocab).length;
  j.added_tokens = j.added_tokens.map((a) => ({ ...a, id: vocab[a.content] }));
  if (j.post_processor) {
    const fix = (p) => {
      if (p.special_tokens) for (const k of Object.keys(p.special_tokens)) p.special_tokens[k].ids = [vocab[k]];
      (p.processors ?? []).forEach(fix);
    };
    fix(j.post_processor);
  }
  j.model = { ...m, vocab, merges };
  fs.writeFileSync(path.join(OUT, f), JSON.stringify(j) + "\n#TEXT#\n" + TEXT);
}
