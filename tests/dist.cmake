wq_test_exe(test_dist_plan SOURCES test_dist_plan.c)
wq_add_test(test_dist_plan LABELS unit)
