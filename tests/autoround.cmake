# Block backward pass (src/kernels/kern_backward.c) vs central finite differences in double.
wq_test_exe(test_kern_backward SOURCES test_kern_backward.c)
wq_add_test(test_kern_backward LABELS unit)
# AutoRound per-linear math (src/algos/algo_autoround.c) on hand-checked cases.
wq_test_exe(test_algo_autoround SOURCES test_algo_autoround.c)
wq_add_test(test_algo_autoround LABELS unit)
