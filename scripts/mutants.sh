#!/usr/bin/env bash
# Runs the default state machine budget once per seeded bug (SQLite, then PostgreSQL if
# LEAKPROOF_PG_URL is set) and prints a table: caught or missed, the backend that caught it,
# steps and seconds to the first failure, and the length of the shrunk transcript; then the
# median and worst time to detection. Exit status 1 if any bug survived.
# Usage: scripts/mutants.sh [mutant-name ...]   (default: every `mutant-*` feature)
set -uo pipefail
cd "$(dirname "$0")/.."
mutants=("$@")
if [ ${#mutants[@]} -eq 0 ]; then
  mapfile -t mutants < <(grep -oE '^mutant-[a-z0-9-]+' Cargo.toml)
fi
logs=target/mutants
mkdir -p "$logs"
printf '%-36s %-7s %-9s %8s %9s %7s\n' mutant verdict backend steps seconds shrunk
status=0
seconds=()
for m in "${mutants[@]}"; do
  cargo test -q --features "$m" --test mutants -- --nocapture >"$logs/$m.log" 2>&1
  line=$(grep -m1 -E '^caught on ' "$logs/$m.log")
  if grep -q 'test result: ok' "$logs/$m.log" && [ -n "$line" ]; then
    # "caught on sqlite: 83 steps, 1.20s to the first failure; shrunk to 6 steps"
    read -r backend steps secs shrunk < <(sed -E \
      's/^caught on ([a-z]+): ([0-9]+) steps, ([0-9.]+)s .* shrunk to ([0-9]+) steps$/\1 \2 \3 \4/' <<<"$line")
    printf '%-36s %-7s %-9s %8s %9s %7s\n' "$m" caught "$backend" "$steps" "$secs" "$shrunk"
    seconds+=("$secs")
  else
    printf '%-36s %-7s see %s\n' "$m" MISSED "$logs/$m.log"
    status=1
  fi
done
if [ ${#seconds[@]} -gt 0 ]; then
  printf '%s\n' "${seconds[@]}" | sort -g | awk '{a[NR]=$1} END {
    m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2
    printf "time to first failure: median %.2fs, worst %.2fs (%d caught)\n", m, a[NR], NR }'
fi
exit $status
