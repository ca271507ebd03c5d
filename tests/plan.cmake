# The planner: cost model units are in dist.cmake; here the CLI end to end (plan, quantize's
# --max-memory and block-time lines, a synthetic sharded BF16 GQA model quantized and evaluated).
wq_test_exe(test_e2e_plan SOURCES test_e2e_plan.c)
target_link_libraries(test_e2e_plan PRIVATE wq_e2e)
add_dependencies(test_e2e_plan wquant_cli)
wq_add_test(test_e2e_plan LABELS "e2e;mpi;io" TIMEOUT 600)
