#!/bin/bash
# Runs shellcheck on the SLURM job scripts, their shared body, their local twin and these tests.
# Usage: tests/jobs/test_shellcheck.sh BUILD_DIR SOURCE_DIR. Skipped (77) without shellcheck.
set -euo pipefail
SRC=$(cd "${2:?usage: test_shellcheck.sh BUILD_DIR SOURCE_DIR}" && pwd)
if ! command -v shellcheck >/dev/null; then
    echo "test_shellcheck: skipped: no shellcheck (apt-get install shellcheck)"
    exit 77
fi
cd "$SRC" # the `# shellcheck source=jobs/...` directives are relative to the checkout
scripts=(jobs/*.sbatch jobs/*.sh tests/jobs/*.sh)
shellcheck -x "${scripts[@]}"
echo "test_shellcheck: ${#scripts[@]} scripts clean ($(shellcheck --version | sed -n 's/^version: //p'))"
