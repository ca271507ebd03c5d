#!/bin/bash
# Regenerates the seed corpora in fuzz/corpus/<harness>/ from the bundled assets and configs.
# Usage: fuzz/make_seeds.sh BUILD_DIR   (a gcc build with the wquant CLI, e.g. build/)
# The seeds are committed; rerun this only when an input format changes.
set -euo pipefail
BUILD=${1:?usage: $0 BUILD_DIR (containing the wquant binary)}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$ROOT/fuzz/corpus
WQ=$(cd "$BUILD" && pwd)/wquant
[[ -x $WQ ]] || { echo "no $WQ: build wquant first" >&2; exit 2; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$OUT"/{st,config,tok,h5}

# config: every bundled config, plus a few small variants that reach the local-rule and
# calibration branches.
cp "$ROOT"/configs/*.json "$OUT/config/"
cp "$ROOT"/configs/stories260K/*.json "$OUT/config/" 2>/dev/null || true
cat > "$OUT/config/local_rules.json" <<'J'
{"gptq": {"global": {"dtype": "int", "bits": 4, "group_size": 32, "use_sym": true,
                     "act_order": true, "percdamp": 0.01},
          "local": {"lm_head": {"dtype": "fp32"},
                    "re:.*mlp\\..*": {"bits": 8, "group_size": -1},
                    "Linear": {"use_sym": false}}},
 "calibration": {"text": "assets/text/tiny.txt", "format": "stories", "range": [0, 8],
                 "n_samples": 4, "seqlen": 32, "seed": 1}}
J
echo '{"hqq": {"global": {"dtype": "nf4", "group_size": 64}}}' > "$OUT/config/hqq_nf4.json"

# tok: the real model, and a cut-down prefix (corrupt at the end).
cp "$ROOT/assets/stories260K-hf/tokenizer.model" "$OUT/tok/stories260K.model"
head -c 600 "$ROOT/assets/stories260K-hf/tokenizer.model" > "$OUT/tok/prefix600.model"

# tokjson: the test tokenizer.json files cut down, each with a text part (needs node).
if command -v node >/dev/null; then node "$ROOT/fuzz/tools/make_tokjson_seeds.mjs"; fi

# st: the real header with 64 data bytes (offsets then point past the end: rejected), and small
# valid files derived from it (a few tensors, offsets rewritten, data zero-filled).
python3 - "$ROOT/assets/stories260K-hf/model.safetensors" "$OUT/st" <<'PY'
import json, struct, sys
src, out = sys.argv[1], sys.argv[2]
raw = open(src, 'rb').read()
n = struct.unpack('<Q', raw[:8])[0]
open(f'{out}/real_header_trunc.safetensors', 'wb').write(raw[:8 + n + 64])
hdr = json.loads(raw[8:8 + n])
sizes = {'F32': 4, 'F16': 2, 'BF16': 2, 'F64': 8, 'I32': 4, 'I64': 8, 'U8': 1, 'I8': 1}
def write(name, tensors, meta=None):
    h, off = {}, 0
    if meta: h['__metadata__'] = meta
    for k, (dt, shape) in tensors.items():
        nb = sizes[dt]
        for d in shape: nb *= d
        h[k] = {'dtype': dt, 'shape': shape, 'data_offsets': [off, off + nb]}
        off += nb
    j = json.dumps(h, separators=(',', ':')).encode()
    j += b' ' * (-len(j) % 8)
    open(f'{out}/{name}.safetensors', 'wb').write(struct.pack('<Q', len(j)) + j + bytes(off))
names = [k for k in hdr if k != '__metadata__']
small = sorted(names, key=lambda k: hdr[k]['data_offsets'][1] - hdr[k]['data_offsets'][0])[:3]
write('real_small3', {k: ('F32', [min(d, 4) for d in hdr[k]['shape']]) for k in small},
      {'format': 'pt'})
write('dtypes', {'a': ('F16', [2, 3]), 'b': ('BF16', [3]), 'c': ('F64', []), 'd': ('I32', [1, 1, 2]),
                 'e': ('U8', [0]), 'f': ('I8', [2, 2, 1, 1])})
write('empty', {})
PY

# h5: containers from a tiny synthetic Llama (hidden 16), RTN int4 asym and nf4, so that the
# seed stays a few tens of KB.
cat > "$TMP/config.json" <<'J'
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 16,
 "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
 "num_key_value_heads": 1, "vocab_size": 32, "max_position_embeddings": 64,
 "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "hidden_act": "silu",
 "tie_word_embeddings": true, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32"}
J
"$WQ" synth --like "$TMP/config.json" --layers 1 --dtype f32 --out "$TMP/tiny" >/dev/null 2>&1
mkdir -p "$TMP/q4" "$TMP/nf4"
"$WQ" quantize --quiet --model "$TMP/tiny" --out "$TMP/q4/model.h5" --bits 4 --group-size 16 --asym
"$WQ" quantize --quiet --model "$TMP/tiny" --out "$TMP/nf4/model.h5" --dtype nf4 --group-size 16
cp "$TMP/q4/model.h5" "$OUT/h5/tiny_int4_asym.h5"
cp "$TMP/nf4/model.h5" "$OUT/h5/tiny_nf4.h5"
ls -l "$OUT"/*
