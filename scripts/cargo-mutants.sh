#!/usr/bin/env bash
# Mutation testing of db/, registry/ and oauth/ (which files and tests: .cargo/mutants.toml),
# then the kill rate: mutants the tests caught or that hung them (a timeout is a detection),
# over every mutant that built. Missed mutants are listed in $out/mutants.out/missed.txt.
# Usage: scripts/cargo-mutants.sh [cargo-mutants options...]
#   e.g. --shard 1/4, --re 'src/oauth', --in-place (in a scratch worktree), -j 2
# With LEAKPROOF_PG_URL set, the PostgreSQL tests take part too (slower, a few more kills).
set -uo pipefail
cd "$(dirname "$0")/.."
export LEAKPROOF_CASES="${LEAKPROOF_CASES:-64}"
out="${MUTANTS_OUT:-target/cargo-mutants}"
mkdir -p "$out"
# A copy of the tree leaves out what git ignores (target/, fuzz/target/); --in-place makes none.
case " $* " in
  *" --in-place "*) cargo mutants --output "$out" "$@" ;;
  *) cargo mutants --gitignore=true --output "$out" "$@" ;;
esac
status=$?
# cargo-mutants exits 2 when some mutant survived, 3 on timeouts: the table says which.
count() { if [ -f "$out/mutants.out/$1.txt" ]; then wc -l <"$out/mutants.out/$1.txt"; else echo 0; fi; }
caught=$(count caught) missed=$(count missed) timeout=$(count timeout) unviable=$(count unviable)
viable=$((caught + missed + timeout))
echo "viable mutants: $viable (caught $caught, timed out $timeout, missed $missed); unviable: $unviable"
if [ "$viable" -gt 0 ]; then
  awk -v k=$((caught + timeout)) -v v="$viable" 'BEGIN { printf "kill rate: %.1f%%\n", 100 * k / v }'
fi
[ "$missed" -gt 0 ] && sed 's/^/missed: /' "$out/mutants.out/missed.txt"
case $status in 0 | 2 | 3) exit 0 ;; *) exit $status ;; esac
