# HF exports (wquant export --format gptq|awq): the real CLI on stories260K and a synthetic model with
# its widths; an independent reader in the test checks every exported weight bit for bit.
wq_test_exe(test_export_hf SOURCES test_export_hf.c)
target_link_libraries(test_export_hf PRIVATE wq_e2e)
add_dependencies(test_export_hf wquant_cli)
wq_add_test(test_export_hf LABELS "e2e;io" TIMEOUT 600)
