# SLURM job scripts (jobs/): their local twin (mpiexec, bundled model), shellcheck, and the
# end-to-end test on a private single-node SLURM cluster started by the test itself (root only:
# it installs slurm-wlm and munge when missing; skipped, exit 77, otherwise).
wq_add_script_test(test_jobs_local_smoke SCRIPT ../jobs/local_smoke.sh LABELS "e2e;mpi;jobs"
                   TIMEOUT 300)
set_tests_properties(test_jobs_local_smoke PROPERTIES PROCESSORS 2)
wq_add_script_test(test_jobs_shellcheck SCRIPT jobs/test_shellcheck.sh LABELS "unit;jobs" TIMEOUT 60)
set_tests_properties(test_jobs_shellcheck PROPERTIES SKIP_RETURN_CODE 77)
wq_add_script_test(test_slurm SCRIPT jobs/test_slurm.sh LABELS "e2e;slurm" TIMEOUT 600)
set_tests_properties(test_slurm PROPERTIES SKIP_RETURN_CODE 77 PROCESSORS 2)
