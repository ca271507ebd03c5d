wq_test_exe(test_core_config SOURCES test_core_config.c)
wq_add_test(test_core_config LABELS unit)
