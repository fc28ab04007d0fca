#!/usr/bin/env bash
# Builds the named criterion benchmarks (`cargo bench --no-run`) and prints each one's
# executable, one per line in the order asked, for scripts that run the binaries themselves
# (`cargo bench` would hold the target directory's lock for the whole run). Fails, naming it,
# if a benchmark did not build.
#
#   scripts/bench-executables.sh pool ops
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $# -gt 0 ]] || { echo "bench-executables.sh: name at least one benchmark" >&2; exit 2; }
build_args=()
for bench in "$@"; do build_args+=(--bench "$bench"); done
artifacts=$(cargo bench --no-run "${build_args[@]}" --message-format=json-render-diagnostics)
python3 -c '
import json, sys
found = {}
for line in sys.stdin:
    msg = json.loads(line)
    if msg.get("reason") == "compiler-artifact" and msg.get("executable") \
            and "bench" in msg["target"]["kind"]:
        found[msg["target"]["name"]] = msg["executable"]
missing = [name for name in sys.argv[1:] if name not in found]
if missing:
    sys.exit("bench-executables.sh: did not build: " + ", ".join(missing))
for name in sys.argv[1:]:
    print(found[name])' "$@" <<< "$artifacts"
