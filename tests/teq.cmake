# TEQ: the loss-gradient kernels, the algorithm's pieces, and TEQ end to end.
wq_test_exe(test_kern_loss SOURCES test_kern_loss.c)
wq_add_test(test_kern_loss LABELS unit)
wq_test_exe(test_algo_teq SOURCES test_algo_teq.c)
wq_add_test(test_algo_teq LABELS unit)
wq_test_exe(test_e2e_teq SOURCES test_e2e_teq.c)
target_link_libraries(test_e2e_teq PRIVATE wq_e2e)
add_dependencies(test_e2e_teq wquant_cli)
wq_add_test(test_e2e_teq LABELS "e2e;mpi;io" TIMEOUT 600)
