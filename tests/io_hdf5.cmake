# The container (src/io_hdf5/): collective writer, serial reader, qconfig.json.
# MPI runs at every WQ_TEST_NP; the first of them keeps its container for a serial (no mpiexec,
# no MPI_Init) reader run, ordered through a fixture.
wq_test_exe(test_h5_container SOURCES test_h5_container.c)
target_link_libraries(test_h5_container PRIVATE MPI::MPI_C)
# the test damages finished containers with the plain HDF5 API (reader error cases)
target_include_directories(test_h5_container PRIVATE ${HDF5_C_INCLUDE_DIRS})

set(_h5_kept ${CMAKE_CURRENT_BINARY_DIR}/h5_container_kept.h5)
list(GET WQ_TEST_NP 0 _h5_first_np)
foreach(np IN LISTS WQ_TEST_NP)
  if(np EQUAL _h5_first_np)
    wq_add_mpi_test(test_h5_container NP ${np} LABELS io ARGS --keep ${_h5_kept})
    set_tests_properties(test_h5_container.np${np} PROPERTIES FIXTURES_SETUP h5_container_kept)
  else()
    wq_add_mpi_test(test_h5_container NP ${np} LABELS io)
  endif()
endforeach()
add_test(NAME test_h5_container.serial COMMAND test_h5_container --serial ${_h5_kept})
set_tests_properties(test_h5_container.serial PROPERTIES LABELS "io" TIMEOUT 60
  FIXTURES_REQUIRED h5_container_kept)
