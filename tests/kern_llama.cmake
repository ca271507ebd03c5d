# fp32 Llama decoder forward pass (src/kernels/kern_llama.c): pieces vs double references, and the
# bundled stories260K checkpoint (greedy decode, TinyStories perplexity).
wq_test_exe(test_kern_llama SOURCES test_kern_llama.c)
wq_add_test(test_kern_llama LABELS unit)
