# Block backward pass (src/kernels/kern_backward.c) vs central finite differences in double.
wq_test_exe(test_kern_backward SOURCES test_kern_backward.c)
wq_add_test(test_kern_backward LABELS unit)
