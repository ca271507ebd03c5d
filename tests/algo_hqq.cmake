# HQQ solver and kernels (src/algos/algo_hqq.c, src/kernels/kern_hqq.c).
wq_test_exe(test_algo_hqq SOURCES test_algo_hqq.c)
wq_add_test(test_algo_hqq LABELS unit)
