// gen.mjs: builds the tokenizer.json test files of tests/data/tok_json/ and their reference ids.
// Dev-time only (the C tests read the outputs and never need node). Run from the repo root:
//   npm install --prefix /tmp/tokjs @huggingface/tokenizers@0.2.0
//   TOKJS_MODULES=/tmp/tokjs/node_modules node tests/data/tok_json/gen.mjs
// What it writes, and how each part is produced independently of wquant's C code:
//   sp-legacy.json, sp-metaspace.json: the bundled stories260K tokenizer.model (MIT) converted by a
//     protobuf reader written here, with merges derived from the vocabulary as HF's
//     SentencePieceExtractor does (every split of a piece into two pieces, ordered by the merged
//     piece's score); two shapes: normalizer Prepend+Replace (Llama-2) and Metaspace (newer files).
//   gpt2.json, llama3.json, qwen2.json: tiny byte-level BPEs trained here (greedy most-frequent-pair
//     merging, 400 merges) on TinyStories validation stories 0..199 (CDLA-Sharing-1.0, see
//     assets/LICENSES.md), pre-tokenized with JavaScript's own Unicode regexes (GPT-2 pattern /
//     Llama-3 pattern); llama3.json adds whole-word tokens no merge reaches (ignore_merges) and
//     special tokens; qwen2.json uses the Qwen2 pattern and an NFC normalizer (Tokenizers.js applies
//     it with String.prototype.normalize).
//   cases.json: for each tokenizer, text -> ids from @huggingface/tokenizers (Tokenizers.js, the
//     pure-JS port of HF tokenizers), encode(text, {add_special_tokens: false}), plus the decoded
//     text (skip_special_tokens: true, clean_up_tokenization_spaces: false: that clean-up is a
//     transformers-level option, not part of the tokenizer.json decoder). Asset texts are referenced, not copied: stories by index,
//     the first lines of WikiText-2 (CRLF -> LF), C4 records by index.
import fs from "node:fs";
import path from "node:path";
const MODULES = process.env.TOKJS_MODULES ?? "/tmp/tokjs/node_modules";
const { Tokenizer } = await import(path.join(MODULES, "@huggingface/tokenizers/dist/tokenizers.mjs"));

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../../..");
const OUT = path.join(ROOT, "tests/data/tok_json");
const A = (p) => path.join(ROOT, "assets", p);

// ---- protobuf (only what a SentencePiece ModelProto needs) -------------------------------------------
function* pbFields(buf, start = 0, end = buf.length) {
  let p = start;
  const varint = () => {
    let x = 0n, s = 0n;
    for (;;) {
      const c = buf[p++];
      x |= BigInt(c & 0x7f) << s;
      s += 7n;
      if (!(c & 0x80)) return x;
    }
  };
  while (p < end) {
    const key = Number(varint());
    const field = key >> 3, wire = key & 7;
    if (wire === 0) yield { field, wire, v: varint() };
    else if (wire === 1) { yield { field, wire, data: buf.subarray(p, p + 8) }; p += 8; }
    else if (wire === 5) { yield { field, wire, data: buf.subarray(p, p + 4) }; p += 4; }
    else if (wire === 2) { const n = Number(varint()); yield { field, wire, data: buf.subarray(p, p + n) }; p += n; }
    else throw new Error("wire " + wire);
  }
}

function readSentencePiece(file) {
  const buf = fs.readFileSync(file);
  const pieces = [];
  const trainer = {}, norm = {};
  for (const f of pbFields(buf)) {
    if (f.field === 1) {
      const pc = { piece: "", score: 0, type: 1 };
      for (const g of pbFields(f.data)) {
        if (g.field === 1) pc.piece = Buffer.from(g.data).toString("utf8");
        if (g.field === 2) pc.score = Buffer.from(g.data).readFloatLE(0);
        if (g.field === 3) pc.type = Number(g.v);
      }
      pieces.push(pc);
    } else if (f.field === 2) {
      for (const g of pbFields(f.data)) if (g.wire === 0) trainer[g.field] = Number(BigInt.asIntN(32, g.v));
    } else if (f.field === 3) {
      for (const g of pbFields(f.data)) if (g.wire === 0) norm[g.field] = Number(g.v);
    }
  }
  return { pieces, trainer, norm };
}

function spTokenizerJson(sp, metaspace) {
  const vocab = {};
  sp.pieces.forEach((p, i) => (vocab[p.piece] = i));
  // SentencePieceExtractor: for every piece, every split into two vocabulary pieces is a merge;
  // merges ordered by the merged piece's score (descending), then by the ids of the two halves.
  const merges = [];
  sp.pieces.forEach((p, id) => {
    if (p.type !== 1) return;
    const chars = Array.from(p.piece);
    const local = [];
    for (let k = 1; k < chars.length; k++) {
      const l = chars.slice(0, k).join(""), r = chars.slice(k).join("");
      if (l in vocab && r in vocab) local.push([l, r, p.score, id]);
    }
    local.sort((x, y) => vocab[x[0]] - vocab[y[0]] || vocab[x[1]] - vocab[y[1]]);
    merges.push(...local);
  });
  merges.sort((x, y) => y[2] - x[2] || x[3] - y[3]);
  const added = sp.pieces
    .map((p, i) => ({ p, i }))
    .filter(({ p }) => p.type === 2 || p.type === 3)
    .map(({ p, i }) => ({ id: i, content: p.piece, single_word: false, lstrip: false, rstrip: false,
                          normalized: false, special: true }));
  const byteFallback = sp.trainer[35] === 1;
  const unk = sp.pieces[sp.trainer[40] ?? 0].piece;
  const bos = sp.pieces[sp.trainer[41] ?? 1].piece;
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: metaspace ? null : {
      type: "Sequence",
      normalizers: [{ type: "Prepend", prepend: "\u2581" }, { type: "Replace", pattern: { String: " " }, content: "\u2581" }],
    },
    pre_tokenizer: metaspace ? { type: "Metaspace", replacement: "\u2581", prepend_scheme: "first", split: false } : null,
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } },
             { SpecialToken: { id: bos, type_id: 1 } }, { Sequence: { id: "B", type_id: 1 } }],
      special_tokens: { [bos]: { id: bos, ids: [vocab[bos]], tokens: [bos] } },
    },
    decoder: metaspace ? { type: "Metaspace", replacement: "\u2581", prepend_scheme: "first", split: false } : {
      type: "Sequence",
      decoders: [{ type: "Replace", pattern: { String: "\u2581" }, content: " " }, { type: "ByteFallback" },
                 { type: "Fuse" }, { type: "Strip", content: " ", start: 1, stop: 0 }],
    },
    model: { type: "BPE", dropout: null, unk_token: unk, continuing_subword_prefix: null,
             end_of_word_suffix: null, fuse_unk: true, byte_fallback: byteFallback, ignore_merges: false,
             vocab, merges: merges.map(([l, r]) => [l, r]) },
  };
}

// ---- byte-level BPE training ------------------------------------------------------------------------------
const GPT2_RE = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const LLAMA3_RE = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2_RE = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
// JavaScript spelling of the same patterns for training: (?i:...) expanded by hand.
const jsRe = (re) => new RegExp(re.replace("(?i:'s|'t|'re|'ve|'m|'ll|'d)", "'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]"), "gu");

function byteMap() {
  const bs = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const map = new Array(256);
  let n = 0;
  for (let b = 0; b < 256; b++) map[b] = bs.includes(b) ? String.fromCodePoint(b) : String.fromCodePoint(256 + n++);
  return map;
}
const BYTE = byteMap();
const toByteLevel = (s) => Array.from(Buffer.from(s, "utf8"), (b) => BYTE[b]).join("");

function trainBpe(texts, re, nMerges) {
  const counts = new Map();
  for (const t of texts) for (const m of t.match(jsRe(re)) ?? []) {
    const w = toByteLevel(m);
    counts.set(w, (counts.get(w) ?? 0) + 1);
  }
  let words = [...counts].map(([w, c]) => ({ syms: Array.from(w), c }));
  const vocab = {};
  BYTE.forEach((ch) => (vocab[ch] = Object.keys(vocab).length));
  const merges = [];
  for (let k = 0; k < nMerges; k++) {
    const pc = new Map();
    for (const w of words) for (let i = 0; i + 1 < w.syms.length; i++) {
      const key = w.syms[i] + "\u0000" + w.syms[i + 1];
      pc.set(key, (pc.get(key) ?? 0) + w.c);
    }
    let best = null, bc = 0;
    for (const [key, c] of pc) if (c > bc || (c === bc && key < best)) { best = key; bc = c; }
    if (!best) break;
    const [l, r] = best.split("\u0000");
    merges.push([l, r]);
    vocab[l + r] = Object.keys(vocab).length;
    for (const w of words) {
      const s = [];
      for (let i = 0; i < w.syms.length; i++) {
        if (i + 1 < w.syms.length && w.syms[i] === l && w.syms[i + 1] === r) { s.push(l + r); i++; }
        else s.push(w.syms[i]);
      }
      w.syms = s;
    }
  }
  return { vocab, merges };
}

function byteLevelJson({ vocab, merges }, { re, addedList, ignoreMerges, nfc, gpt2 }) {
  vocab = { ...vocab };
  const added = addedList.map(([content, special, extra]) => {
    const id = Object.keys(vocab).length;
    vocab[content] = id;
    return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: !special,
             special, ...(extra ?? {}) };
  });
  const bos = added.find((a) => a.content === "<|begin_of_text|>");
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: nfc ? { type: "NFC" } : null,
    pre_tokenizer: gpt2 ? { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true } : {
      type: "Sequence",
      pretokenizers: [{ type: "Split", pattern: { Regex: re }, behavior: "Isolated", invert: false },
                      { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false }],
    },
    post_processor: bos ? {
      type: "Sequence",
      processors: [{ type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
                   { type: "TemplateProcessing", single: [{ SpecialToken: { id: bos.content, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
                     pair: [{ SpecialToken: { id: bos.content, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { Sequence: { id: "B", type_id: 1 } }],
                     special_tokens: { [bos.content]: { id: bos.content, ids: [bos.id], tokens: [bos.content] } } }],
    } : { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: gpt2 ? "" : null,
             end_of_word_suffix: gpt2 ? "" : null, fuse_unk: false, byte_fallback: false, ignore_merges: ignoreMerges,
             vocab, merges: gpt2 ? merges.map(([l, r]) => l + " " + r) : merges },
  };
}

// ---- texts --------------------------------------------------------------------------------------------------
const strip = (s) => s.replace(/^[ \t\n\r\v\f]+|[ \t\n\r\v\f]+$/g, "");
const stories = fs.readFileSync(A("text/tinystories-val-500.txt"), "utf8").split("<|endoftext|>").map(strip);
const wikiLines = fs.readFileSync(A("text/wikitext2-test.raw"), "utf8").replace(/\r\n/g, "\n").split("\n");
const c4 = fs.readFileSync(A("text/c4-sample-1000.jsonl"), "utf8").split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l).text);

const HARD = [
  "Hello world",
  "Once upon a time, there was a little girl named Lily.",
  "  leading and  double  spaces   and trailing   ",
  "tabs\tand\t\ttabs \t mixed",
  "line one\nline two\n\nline four\r\nwindows\r\n\r\n",
  "\n\n\nstarts with newlines",
  "I'm sure you'll see they've said it's 'quoted' and WE'RE LOUD, DON'T I'D",
  "digits 1 12 123 1234 12345 3.14159 2024-11-27 1,000,000",
  "Ünïcödé café naïve résumé Ångström",
  "\u4e2d\u6587\u6d4b\u8bd5\uff0c\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3002\ud55c\uad6d\uc5b4",
  "emoji \ud83d\ude00\ud83d\udc4d\ud83c\udffd family \ud83d\udc68\u200d\ud83d\udc69\u200d\ud83d\udc67 flags \ud83c\uddeb\ud83c\uddf7!",
  "math \u2211 \u221e \u2248 \u00b1 \u00bd \u2160 \u0661\u0662\u0663 Ⅻ",
  "punctuation!!! ??? ... --- (brackets) [x] {y} <z> @#$%^&*",
  "   ",
  "a",
  "\u00a0nbsp\u00a0and\u2003em\u3000ideographic",
  "Special <|endoftext|> in the middle <|endoftext|>",
  "<s>Hello</s> <s> spaced </s>",
  "<|begin_of_text|>Hi<|eot_id|> <|reserved_0|>x",
  "mixed123abc ABC123 \u0394\u03b5\u03bb\u03c4\u03b1 \u041f\u0440\u0438\u0432\u0435\u0442 \u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627",
  "zero\u200bwidth and combining-free text",
  "strip  <mask>  around\t<mask>x <mask>",
  "\u2581\u2581 leading metaspace \u2581x",
  "decomposed cafe\u0301 A\u030a \u212b \u1100\u1161\u11a8 q\u0307\u0323 \u0915\u093c \u1e0a\u0323 o\u0308\u0304",
];

const assetCases = [
  ...[400, 401, 402, 403, 404, 405].map((i) => ({ source: "story", index: i, text: stories[i] })),
  { source: "wikitext", lines: 40, text: wikiLines.slice(0, 40).join("\n") + "\n" },
  ...[0, 1, 2].map((i) => ({ source: "c4", index: i, text: c4[i] })),
];

// ---- build ------------------------------------------------------------------------------------------------
const sp = readSentencePiece(A("stories260K-hf/tokenizer.model"));
const train = stories.slice(0, 200);
const g2 = trainBpe(train, GPT2_RE, 400);
const l3 = trainBpe(train, LLAMA3_RE, 400);
// whole words no merge sequence reaches in one piece: only ignore_merges emits them
const l3x = { vocab: { ...l3.vocab }, merges: l3.merges };
for (const w of [" upon", " wonderful", "Once", " 123"].map(toByteLevel)) if (!(w in l3x.vocab)) l3x.vocab[w] = Object.keys(l3x.vocab).length;

const files = {
  "sp-legacy.json": spTokenizerJson(sp, false),
  "sp-metaspace.json": spTokenizerJson(sp, true),
  "gpt2.json": byteLevelJson(g2, { gpt2: true, ignoreMerges: false, addedList: [["<|endoftext|>", true]] }),
  "llama3.json": byteLevelJson(l3x, {
    re: LLAMA3_RE, ignoreMerges: true,
    addedList: [["<|begin_of_text|>", true], ["<|end_of_text|>", true], ["<|eot_id|>", true],
                ["<|reserved_0|>", true], ["<|endoftext|>", true], [" spaced", false],
                ["<mask>", true, { lstrip: true, rstrip: true }]],
  }),
  "qwen2.json": byteLevelJson(trainBpe(train, QWEN2_RE, 400), {
    re: QWEN2_RE, ignoreMerges: false, nfc: true,
    addedList: [["<|endoftext|>", true], ["<|im_start|>", true], ["<|im_end|>", true]],
  }),
};

const out = { note: "generated by tests/data/tok_json/gen.mjs with @huggingface/tokenizers 0.2.0; do not edit", tokenizers: [] };
for (const [name, json] of Object.entries(files)) {
  const text = JSON.stringify(json, null, 1);
  fs.writeFileSync(path.join(OUT, name), text + "\n");
  const tok = new Tokenizer(JSON.parse(text), {});
  const cases = [];
  for (const t of HARD) {
    const ids = tok.encode(t, { add_special_tokens: false }).ids;
    cases.push({ text: t, ids, decoded: tok.decode(ids, { skip_special_tokens: true, clean_up_tokenization_spaces: false }) });
  }
  for (const a of assetCases) {
    const ids = tok.encode(a.text, { add_special_tokens: false }).ids;
    const { text, ...ref } = a;
    cases.push({ ...ref, ids });
  }
  out.tokenizers.push({ file: name, cases });
  console.log(name, Object.keys(json.model.vocab).length, "tokens", json.model.merges.length, "merges",
              cases.reduce((s, c) => s + c.ids.length, 0), "ids");
}
fs.writeFileSync(path.join(OUT, "cases.json"), JSON.stringify(out) + "\n");
