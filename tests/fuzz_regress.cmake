# Fuzz regression replays: each libFuzzer harness in fuzz/ is also built with the project compiler
# and a plain main (fuzz/fuzz_replay.c) that runs it over the saved findings in
# fuzz/regressions/<harness>/ and the seed corpus fuzz/corpus/<harness>/. Under WQ_SANITIZE the
# replays run with ASan+UBSan (scripts/sanitize.sh). A crash or harness invariant abort fails.
set(_wq_fuzz_dir ${PROJECT_SOURCE_DIR}/fuzz)
foreach(h IN ITEMS st config tok tokjson h5)
  if(NOT EXISTS ${_wq_fuzz_dir}/fuzz_${h}.c)
    continue()
  endif()
  add_executable(fuzz_replay_${h} ${_wq_fuzz_dir}/fuzz_replay.c ${_wq_fuzz_dir}/fuzz_${h}.c)
  target_link_libraries(fuzz_replay_${h} PRIVATE wquant)
  target_include_directories(fuzz_replay_${h} PRIVATE ${_wq_fuzz_dir})
  set(_dirs)
  foreach(d IN ITEMS regressions/${h} corpus/${h})
    if(IS_DIRECTORY ${_wq_fuzz_dir}/${d})
      list(APPEND _dirs ${_wq_fuzz_dir}/${d})
    endif()
  endforeach()
  if(_dirs)
    wq_add_test(fuzz_replay_${h} LABELS unit ARGS ${_dirs})
  endif()
endforeach()
