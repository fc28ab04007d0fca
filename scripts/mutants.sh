#!/usr/bin/env bash
# Runs the default state machine (SQLite) once per seeded bug and reports: caught or missed,
# time and steps to the first failure, and the length of the shrunk transcript.
# Usage: scripts/mutants.sh [mutant-name ...]   (default: every `mutant-*` feature)
set -uo pipefail
cd "$(dirname "$0")/.."
mutants=("$@")
if [ ${#mutants[@]} -eq 0 ]; then
  mapfile -t mutants < <(grep -oE '^mutant-[a-z0-9-]+' Cargo.toml)
fi
printf '%-32s %-7s %s\n' mutant verdict detail
status=0
for m in "${mutants[@]}"; do
  out=$(cargo test -q --features "$m" --test mutants -- --nocapture 2>&1)
  line=$(grep -m1 -E '^seed [0-9]+: failed' <<<"$out")
  if grep -q 'test result: ok' <<<"$out" && [ -n "$line" ]; then
    printf '%-32s %-7s %s\n' "$m" caught "${line#*: }"
  else
    printf '%-32s %-7s %s\n' "$m" MISSED "$(grep -m1 -E 'survived|panicked|error' <<<"$out")"
    status=1
  fi
done
exit $status
