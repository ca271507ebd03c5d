# Installation of libwquant: the static library built from the layer objects, the public header
# include/wquant.h, the wquant CLI, a CMake package (wquantConfig.cmake + version file, imported
# target wquant::wquant) and a pkg-config file (wquant.pc). Included from the top-level
# CMakeLists.txt. See docs/packaging.md for the choices (static, dependencies, relocatability).
include(CMakePackageConfigHelpers)

# The installed library is a second archive of the same objects with a clean interface (the
# in-tree `wquant` target carries build-tree include paths and warning flags for the tests).
add_library(wquant_pkg STATIC $<TARGET_OBJECTS:wq_core> $<TARGET_OBJECTS:wq_kernels>
  $<TARGET_OBJECTS:wq_model> $<TARGET_OBJECTS:wq_algos> $<TARGET_OBJECTS:wq_dist>
  $<TARGET_OBJECTS:wq_io_hdf5>)
set_target_properties(wquant_pkg PROPERTIES OUTPUT_NAME wquant EXPORT_NAME wquant
  ARCHIVE_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/pkg)
target_include_directories(wquant_pkg INTERFACE
  $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include> $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
# Link dependencies of a static library travel with it: imported targets re-found by
# wquantConfig.cmake (find_dependency), HDF5 as the absolute paths found here.
target_link_libraries(wquant_pkg INTERFACE cjson BLAS::BLAS LAPACK::LAPACK MPI::MPI_C
  ${HDF5_C_LIBRARIES} m)
add_library(wquant::wquant ALIAS wquant_pkg)

install(TARGETS wquant_pkg EXPORT wquantTargets ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(TARGETS wquant_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${PROJECT_SOURCE_DIR}/include/wquant.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
set(WQ_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/wquant)
install(EXPORT wquantTargets NAMESPACE wquant:: DESTINATION ${WQ_CMAKE_DIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/wquantConfig.cmake.in
  ${PROJECT_BINARY_DIR}/pkg/wquantConfig.cmake INSTALL_DESTINATION ${WQ_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/pkg/wquantConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)  # 0.x: minor bumps may break
install(FILES ${PROJECT_BINARY_DIR}/pkg/wquantConfig.cmake ${PROJECT_BINARY_DIR}/pkg/wquantConfigVersion.cmake
  DESTINATION ${WQ_CMAKE_DIR})

# pkg-config: relocatable (prefix from the .pc file's own location); the dependencies are listed
# in Libs because the library is static only.
get_target_property(_cjson_loc cjson IMPORTED_LOCATION_RELEASE)
if(NOT _cjson_loc)
  get_target_property(_cjson_loc cjson IMPORTED_LOCATION_NONE)
endif()
set(_deps ${_cjson_loc} ${LAPACK_LIBRARIES} ${BLAS_LIBRARIES} ${MPI_C_LIBRARIES} ${HDF5_C_LIBRARIES})
list(REMOVE_DUPLICATES _deps)
list(JOIN _deps " " _pc_libs)
string(APPEND _pc_libs " -lm")
file(RELATIVE_PATH WQ_PC_TO_PREFIX /${CMAKE_INSTALL_LIBDIR}/pkgconfig /)
configure_file(${PROJECT_SOURCE_DIR}/cmake/wquant.pc.in ${PROJECT_BINARY_DIR}/pkg/wquant.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/pkg/wquant.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
