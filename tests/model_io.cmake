# model/ I/O: safetensors reader/writer and HF config.json parsing (bundled stories260K + crafted files).
wq_test_exe(test_st SOURCES test_st.c)
wq_add_test(test_st LABELS "unit;io")
wq_test_exe(test_hf_config SOURCES test_hf_config.c)
wq_add_test(test_hf_config LABELS "unit;io")
