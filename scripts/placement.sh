#!/usr/bin/env bash
# The pool benchmark's no-collapse sweeps, run alternately with the process free to use every
# CPU and confined to the first CPU it may use (taskset): tells what the pool does from where
# the OS puts its threads. On SQLite every statement is a round trip between a runtime worker
# and the connection's own thread; on one CPU the two hand over by preemption, across two they
# wake each other. Confinement hides any cost of moving work between threads, including a pool
# that collapses into one task switch per checkout, so the target is never read from it.
#
#   scripts/placement.sh                            # sqlite/select1/size1/, 3 alternations
#   scripts/placement.sh 2 sqlite/cycle/size1/      # alternations, a criterion filter
#
# Each alternation of one group takes ~1 minute per placement (45 rounds, --quick windows).
# Criterion's results go to target/criterion-placement, apart from scripts/bench.sh's.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v taskset >/dev/null || { echo "placement.sh: needs taskset (util-linux)" >&2; exit 1; }
case "${1:-}" in
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
esac
alternations=${1:-3}
filter=${2:-sqlite/select1/size1/}
[[ "$alternations" =~ ^[1-9][0-9]*$ ]] || {
    echo "placement.sh: alternations must be a positive number, got '$alternations'" >&2; exit 2; }

bench=$(scripts/bench-executables.sh pool)
first_cpu=$(taskset -pc $$ | sed 's/.*: //; s/[,-].*//')
out_dir=${CARGO_TARGET_DIR:-target}/criterion-placement
mkdir -p "$out_dir"
log="$out_dir/placement.log"
: > "$log"
# Criterion's progress goes to a file; shown if a run fails.
progress="$out_dir/criterion.log"

for ((i = 1; i <= alternations; i++)); do
    for placement in free one-cpu; do
        pin=()
        [[ $placement == one-cpu ]] && pin=(taskset -c "$first_cpu")
        echo "placement.sh: run $i of $alternations, $placement" >&2
        if ! CRITERION_HOME="$out_dir" "${pin[@]}" "$bench" --bench --warm-up-time 0.2 \
            --measurement-time 0.5 "$filter" > "$out_dir/run.out" 2> "$progress"; then
            tail -20 "$progress" >&2
            echo "placement.sh: the pool benchmark failed ($placement)" >&2
            exit 1
        fi
        { grep '^sweep' "$out_dir/run.out" || true; } | sed "s/^/$placement\t/" >> "$log"
    done
done

python3 - "$log" <<'PY'
import json, sys
readings = {}
for line in open(sys.argv[1]):
    placement, _, body = line.rstrip("\n").split("\t", 2)
    r = json.loads(body)
    paired = {int(c): v for c, v in r["largest_over"].items()}
    low = min(paired, key=paired.get)
    rates = {int(c): v for c, v in r["rates"].items()}
    readings.setdefault((r["group"], placement), []).append((paired[low], low, rates))
if not readings:
    sys.exit("placement.sh: the filter selected no sweep")
print("wrapped ops/s at 128 tasks over the count it is lowest against (paired within rounds),")
print("and the median rates per task count, in the order run")
for (group, placement), runs in sorted(readings.items()):
    print(f"{group[5:]:<28} {placement:<8} " + "  ".join(f"{p:.2f} (vs {c})" for p, c, _ in runs))
    for _, _, rates in runs:
        print(f"{'':<37} " + ", ".join(f"{t}: {v:,.0f}" for t, v in sorted(rates.items())))
PY
