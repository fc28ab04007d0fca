#!/usr/bin/env bash
# Instructions per checkout cycle on one task, sqlx's raw acquire and release against
# `Db::session` and its drop (examples/cycle_cost.rs), counted by callgrind: the same count
# on every run, whatever else the machine does. Each side runs at two counts and the
# difference is divided, so the setup (runtime, pool, scratch database) cancels out.
#
#   scripts/cycle-cost.sh            # needs valgrind
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "cycle-cost.sh: needs valgrind" >&2; exit 1; }
cargo build --release --quiet --example cycle_cost
bin=${CARGO_TARGET_DIR:-target}/release/examples/cycle_cost
small=2000
large=12000

instructions() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" "$2" 2>&1 |
        awk '/Collected :/ { print $NF }'
}

declare -A per_cycle
for side in raw wrapped; do
    a=$(instructions "$side" "$small")
    b=$(instructions "$side" "$large")
    [[ -n "$a" && -n "$b" ]] || { echo "cycle-cost.sh: callgrind gave no count for $side" >&2; exit 1; }
    per_cycle[$side]=$(( (b - a) / (large - small) ))
    printf '%-8s %7d instructions per cycle\n' "$side" "${per_cycle[$side]}"
done
awk -v w="${per_cycle[wrapped]}" -v r="${per_cycle[raw]}" \
    'BEGIN { printf "wrapped / raw: %.3f\n", w / r }'
