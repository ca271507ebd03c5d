# Block backward pass (src/kernels/kern_backward.c) vs central finite differences in double.
wq_test_exe(test_kern_backward SOURCES test_kern_backward.c)
wq_add_test(test_kern_backward LABELS unit)
# AutoRound per-linear math (src/algos/algo_autoround.c) on hand-checked cases.
wq_test_exe(test_algo_autoround SOURCES test_algo_autoround.c)
wq_add_test(test_algo_autoround LABELS unit)
# AutoRound end to end on stories260K (np 1/2/4 bit-identical, iters=0 == RTN, bad input).
wq_test_exe(test_e2e_autoround SOURCES test_e2e_autoround.c)
target_link_libraries(test_e2e_autoround PRIVATE wq_e2e)
add_dependencies(test_e2e_autoround wquant_cli)
wq_add_test(test_e2e_autoround LABELS "e2e;mpi;io" TIMEOUT 900)
# Issue acceptance on stories260K (200 iterations x 3 settings): slow.
wq_add_script_test(test_autoround_acceptance SCRIPT autoround_acceptance.sh LABELS "slow;e2e"
                   TIMEOUT 5400)
