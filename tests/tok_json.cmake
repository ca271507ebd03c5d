# HF tokenizer.json (BPE) tests: reference ids from Tokenizers.js (tests/data/tok_json/), the
# converted stories260K tokenizer against tok_sp on the asset texts. Serial, a few seconds.
wq_test_exe(test_tok_json SOURCES test_tok_json.c)
wq_add_test(test_tok_json LABELS unit)
wq_add_script_test(test_tok_json_e2e SCRIPT tok_json_e2e.sh LABELS "e2e" TIMEOUT 300)
