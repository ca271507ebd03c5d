# GGUF export (wquant export --format gguf): an independent GGUF reader in the C test checks the
# header, metadata, tensor layout and every block against the container; the script test loads the
# exports with llama.cpp itself (node-llama-cpp's prebuilt CPU binaries, installed from npm into the
# build tree).
wq_test_exe(test_export_gguf SOURCES test_export_gguf.c)
target_link_libraries(test_export_gguf PRIVATE wq_e2e)
add_dependencies(test_export_gguf wquant_cli)
wq_add_test(test_export_gguf LABELS "e2e;io;gguf" TIMEOUT 300)
wq_add_script_test(test_gguf_llama_cpp SCRIPT gguf/test_gguf_llama_cpp.sh LABELS "e2e;gguf"
                   TIMEOUT 900)
