#!/usr/bin/env bash
# The test files, run by Node's test runner on one node binary. One list for `npm test` and CI.
#   scripts/run-tests.sh all        every test file: what `npm test` runs after build and check
#   scripts/run-tests.sh portable   all but the fault suite and Docker (core, adapters, CLI, end-to-end,
#                                   README commands, consumer): what CI also runs on Node 22 and 24
# TEST_NODE=/path/to/node picks the binary (default: node on PATH; not NODE, which `npm run`
# overwrites). Its directory goes first on PATH, so every `node` and `npx` a test starts
# (workers, bins, npm) runs that version too.
set -euo pipefail
cd "$(dirname "$0")/.."
node_bin="${TEST_NODE:-$(command -v node)}"
PATH="$(dirname "$node_bin"):$PATH"
export PATH
# The suite upgrades hundreds of times; the default probation (10 s, the old process watching its
# successor before it lets go) would add 9 s to each. Tests of the probation set their own.
export GRACE_RESTART_PROBATION="${GRACE_RESTART_PROBATION:-1000}"
# Likewise the move's slow start (default 3 s): 1 s keeps each upgrade as short as the probation.
export GRACE_RESTART_SLOW_START="${GRACE_RESTART_SLOW_START:-1000}"

files=()
for file in packages/*/test/*.test.mjs test/*.test.mjs; do
  # The fault suite reads the same Node internals as the rest; it is long, so it runs on Node 20 only.
  if [[ "${1:-all}" == portable && "$file" == test/faults.test.mjs ]]; then continue; fi
  # The Docker tests run the image's own Node (copied from the Node 20 run), whatever runs the test.
  if [[ "${1:-all}" == portable && "$file" == test/docker.test.mjs ]]; then continue; fi
  files+=("$file")
done
echo "node $("$node_bin" --version): ${#files[@]} test files"
exec "$node_bin" --test --test-concurrency=1 --test-timeout=600000 "${files[@]}"
