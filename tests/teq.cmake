# TEQ: the loss-gradient kernels, the algorithm's pieces, and TEQ end to end.
wq_test_exe(test_kern_loss SOURCES test_kern_loss.c)
wq_add_test(test_kern_loss LABELS unit)
wq_test_exe(test_algo_teq SOURCES test_algo_teq.c)
wq_add_test(test_algo_teq LABELS unit)
