# valgrind memcheck of quantize + eval on the bundled model (one rank). Not run in sanitizer builds
# (ASan and valgrind exclude each other). Skipped (77) without valgrind.
if(NOT WQ_SANITIZE)
  wq_add_script_test(test_valgrind_e2e SCRIPT valgrind/memcheck_e2e.sh LABELS "valgrind;e2e"
                     TIMEOUT 600)
  set_tests_properties(test_valgrind_e2e PROPERTIES SKIP_RETURN_CODE 77)
endif()
