# Sweeps: the PNG encoder, plotter and axis enumeration (unit, decoded by zlib), and `wquant sweep`
# end to end on stories260K under mpiexec (table, plot, resume, numbers equal to `wquant eval`).
find_package(ZLIB REQUIRED)  # the test's independent inflate; zlib1g-dev comes with libhdf5-dev
wq_test_exe(test_core_png SOURCES test_core_png.c)
target_link_libraries(test_core_png PRIVATE ZLIB::ZLIB)
wq_add_test(test_core_png LABELS unit)
wq_add_script_test(test_e2e_sweep SCRIPT test_e2e_sweep.sh LABELS "e2e;mpi;io" TIMEOUT 600)
set_tests_properties(test_e2e_sweep PROPERTIES PROCESSORS 2)
# Packaging: cmake --install into a temporary prefix, the example built with find_package and with
# pkg-config outside the source tree, run and checked against the RTN error bound.
wq_add_script_test(test_install SCRIPT test_install.sh LABELS "unit;install" TIMEOUT 300)
