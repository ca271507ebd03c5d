# GPTQ layer solver and Hessian kernel (src/algos/algo_gptq.c, src/kernels/kern_hessian.c).
wq_test_exe(test_algo_gptq SOURCES test_algo_gptq.c)
wq_add_test(test_algo_gptq LABELS unit)
