# Quantization and packing kernels (src/kernels/kern_quant*.c, kern_pack.c).
wq_test_exe(test_kern_quant SOURCES test_kern_quant.c)
wq_add_test(test_kern_quant LABELS unit)
wq_test_exe(test_kern_pack SOURCES test_kern_pack.c)
wq_add_test(test_kern_pack LABELS unit)
