# Quantization and packing kernels (src/kernels/kern_quant*.c, kern_pack.c).
wq_test_exe(test_kern_quant SOURCES test_kern_quant.c)
wq_add_test(test_kern_quant LABELS unit)
wq_test_exe(test_kern_pack SOURCES test_kern_pack.c)
wq_add_test(test_kern_pack LABELS unit)
# The same binary once per forced instruction set (WQ_KERNEL_ISA; unavailable sets step down), so
# the public entry points run through each dispatch target too.
foreach(_isa ref generic sse2 avx2 avx512)
  add_test(NAME test_kern_quant_isa_${_isa} COMMAND test_kern_quant)
  set_tests_properties(test_kern_quant_isa_${_isa} PROPERTIES LABELS unit TIMEOUT 120
    ENVIRONMENT "WQ_KERNEL_ISA=${_isa}")
  add_test(NAME test_kern_pack_isa_${_isa} COMMAND test_kern_pack)
  set_tests_properties(test_kern_pack_isa_${_isa} PROPERTIES LABELS unit TIMEOUT 120
    ENVIRONMENT "WQ_KERNEL_ISA=${_isa}")
endforeach()
