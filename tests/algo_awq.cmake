wq_test_exe(test_algo_awq SOURCES test_algo_awq.c)
wq_add_test(test_algo_awq LABELS unit)
