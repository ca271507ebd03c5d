# TEQ: the loss-gradient kernels, the algorithm's pieces, and TEQ end to end.
wq_test_exe(test_kern_loss SOURCES test_kern_loss.c)
wq_add_test(test_kern_loss LABELS unit)
wq_test_exe(test_algo_teq SOURCES test_algo_teq.c)
wq_add_test(test_algo_teq LABELS unit)
wq_test_exe(test_e2e_teq SOURCES test_e2e_teq.c)
target_link_libraries(test_e2e_teq PRIVATE wq_e2e)
add_dependencies(test_e2e_teq wquant_cli)
wq_add_test(test_e2e_teq LABELS "e2e;mpi;io" TIMEOUT 600)
# TEQ training needs the transformer-block backward (branch ar); until it is merged the trainer
# stops with "block backward not available", so the end-to-end test is registered but disabled.
set_tests_properties(test_e2e_teq PROPERTIES DISABLED TRUE)
