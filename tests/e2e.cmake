# End-to-end tests: the real CLI under mpiexec on the bundled model.
add_library(wq_e2e STATIC wq_e2e.c)
target_link_libraries(wq_e2e PUBLIC wq_testutil)
target_compile_definitions(wq_e2e PRIVATE WQ_BUILD_DIR="${PROJECT_BINARY_DIR}"
  WQ_ASSETS_DIR="${WQ_ASSETS_DIR}")
foreach(t test_e2e_rtn test_e2e_badinput test_e2e_eval test_e2e_gptq test_e2e_awq test_e2e_hqq
    test_e2e_resume)
  if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${t}.c)
    wq_test_exe(${t} SOURCES ${t}.c)
    target_link_libraries(${t} PRIVATE wq_e2e)
    add_dependencies(${t} wquant_cli)
    wq_add_test(${t} LABELS "e2e;mpi;io" TIMEOUT 600)
  endif()
endforeach()
