# Streaming RTN (src/algos/algo_rtn.c).
wq_test_exe(test_algo_rtn SOURCES test_algo_rtn.c)
wq_add_test(test_algo_rtn LABELS unit)
