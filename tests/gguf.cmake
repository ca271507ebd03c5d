# GGUF export (wquant export --format gguf): the script test loads the exports with llama.cpp itself
# (node-llama-cpp's prebuilt CPU binaries, installed from npm into the build tree).
wq_add_script_test(test_gguf_llama_cpp SCRIPT gguf/test_gguf_llama_cpp.sh LABELS "e2e;gguf"
                   TIMEOUT 900)
