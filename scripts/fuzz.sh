#!/usr/bin/env bash
# cargo-fuzz campaigns on this machine: stable Rust and no sanitizer, so no nightly is needed
# (the targets are safe Rust, and cargo-fuzz does not instrument SQLite's C code anyway).
#
#   scripts/fuzz.sh build [--mutant NAME]
#   scripts/fuzz.sh run TARGET [--time SECS] [--jobs N] [--mutant NAME] [-- LIBFUZZER_ARGS…]
#   scripts/fuzz.sh smoke [SECS]            every target for SECS (default 60) from the corpus
#   scripts/fuzz.sh cmin TARGET             fold fuzz/work/TARGET into the committed corpus, minimized
#   scripts/fuzz.sh repro TARGET FILE [--mutant NAME]
#                                           run one input under libFuzzer, then replay it on stable
#   scripts/fuzz.sh keep TARGET FILE        commit a crash as a regression (fuzz/regressions/TARGET/)
#   scripts/fuzz.sh hunt --mutant NAME [--runs N] [--time SECS] [--empty]
#                                           seconds until `ops` finds a seeded bug, N times
#
# Targets: ops, oauth_input, registry_input. A campaign reads the committed corpus
# (fuzz/corpus/TARGET) and the regressions, and writes what it finds new to fuzz/work/TARGET
# (not committed; `cmin` keeps what adds coverage). Crashes land in fuzz/artifacts/TARGET/.
# Environment: FUZZ_TOOLCHAIN=nightly FUZZ_SANITIZER=address for ASan (needs a nightly);
# LEAKPROOF_SETTLE_MS as for the state machines.
set -euo pipefail
cd "$(dirname "$0")/.."

targets=(ops oauth_input registry_input)
toolchain=${FUZZ_TOOLCHAIN:+"+$FUZZ_TOOLCHAIN"}
sanitizer=${FUZZ_SANITIZER:-none}
# Each input has a few milliseconds; one that takes 30 s has hung, which is a finding.
timeout_secs=30

need_cargo_fuzz() {
  if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing; installing it (a few minutes, once)" >&2
    cargo install cargo-fuzz --locked
  fi
}

known_target() {
  local t
  for t in "${targets[@]}"; do [ "$t" = "$1" ] && return 0; done
  echo "no fuzz target '$1'; there are: ${targets[*]}" >&2
  exit 2
}

# cargo fuzz with this machine's settings. Features: a seeded bug of the main crate.
fuzz() {
  local sub=$1
  shift
  local features=()
  [ -n "${mutant:-}" ] && features=(--features "leakproof/mutant-${mutant#mutant-}")
  cargo $toolchain fuzz "$sub" --sanitizer "$sanitizer" ${features[@]+"${features[@]}"} "$@"
}

dirs_for() {
  mkdir -p "fuzz/work/$1" "fuzz/corpus/$1" "fuzz/regressions/$1"
  echo "fuzz/work/$1 fuzz/corpus/$1 fuzz/regressions/$1"
}

cmd=${1:-help}
shift || true
mutant=""
case "$cmd" in
  build)
    [ "${1:-}" = "--mutant" ] && mutant=$2
    need_cargo_fuzz
    fuzz build
    ;;
  run)
    target=${1:?usage: scripts/fuzz.sh run TARGET [--time SECS] [--jobs N] [--mutant NAME]}
    known_target "$target"
    shift
    time=0 jobs=1
    while [ $# -gt 0 ]; do
      case "$1" in
        --time) time=$2; shift 2 ;;
        --jobs) jobs=$2; shift 2 ;;
        --mutant) mutant=$2; shift 2 ;;
        --) shift; break ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
      esac
    done
    need_cargo_fuzz
    # shellcheck disable=SC2046
    fuzz run --jobs "$jobs" "$target" $(dirs_for "$target") -- \
      -max_total_time="$time" -timeout="$timeout_secs" -print_final_stats=1 "$@"
    ;;
  smoke)
    secs=${1:-60}
    need_cargo_fuzz
    fuzz build
    for t in "${targets[@]}"; do
      echo "== $t: ${secs}s"
      log=$(mktemp)
      work=$(mktemp -d)
      mkdir -p "fuzz/corpus/$t" "fuzz/regressions/$t"
      if fuzz run "$t" "$work" "fuzz/corpus/$t" "fuzz/regressions/$t" -- \
          -max_total_time="$secs" -timeout="$timeout_secs" -print_final_stats=1 >"$log" 2>&1; then
        grep -E '^stat::(number_of_executed_units|average_exec_per_sec)' "$log"
      else
        tail -60 "$log"
        echo "fuzz target $t failed; the input is in fuzz/artifacts/$t/" >&2
        exit 1
      fi
      rm -rf "$work" "$log"
    done
    ;;
  cmin)
    target=${1:?usage: scripts/fuzz.sh cmin TARGET}
    known_target "$target"
    need_cargo_fuzz
    mkdir -p "fuzz/work/$target" "fuzz/corpus/$target"
    find "fuzz/work/$target" -maxdepth 1 -type f -exec cp -n {} "fuzz/corpus/$target/" \;
    # A set cover of the features, not every input that adds one: a few hundred files at most.
    fuzz cmin "$target" "fuzz/corpus/$target" -- -set_cover_merge=1
    echo "fuzz/corpus/$target: $(find "fuzz/corpus/$target" -type f | wc -l) files, $(du -sh "fuzz/corpus/$target" | cut -f1)"
    ;;
  repro)
    target=${1:?usage: scripts/fuzz.sh repro TARGET FILE [--mutant NAME]}
    file=${2:?usage: scripts/fuzz.sh repro TARGET FILE [--mutant NAME]}
    [ "${3:-}" = "--mutant" ] && mutant=${4:?}
    known_target "$target"
    need_cargo_fuzz
    fuzz run "$target" "$file" || true
    echo "== the same input on stable, with its decoded form and transcript"
    test_features=()
    [ -n "$mutant" ] && test_features=(--features "mutant-${mutant#mutant-}")
    LEAKPROOF_FUZZ_FILE="$file" LEAKPROOF_FUZZ_TARGET="$target" \
      cargo test ${test_features[@]+"${test_features[@]}"} --test fuzz_corpus one_file -- --nocapture
    ;;
  keep)
    target=${1:?usage: scripts/fuzz.sh keep TARGET FILE}
    file=${2:?usage: scripts/fuzz.sh keep TARGET FILE}
    known_target "$target"
    mkdir -p "fuzz/regressions/$target"
    dest="fuzz/regressions/$target/crash-$(sha1sum "$file" | cut -c1-16)"
    cp "$file" "$dest"
    echo "$dest: cargo test --test fuzz_corpus replays it from now on"
    ;;
  hunt)
    runs=3 time=600 empty=0
    while [ $# -gt 0 ]; do
      case "$1" in
        --mutant) mutant=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --time) time=$2; shift 2 ;;
        --empty) empty=1; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
      esac
    done
    [ -n "$mutant" ] || { echo "usage: scripts/fuzz.sh hunt --mutant NAME" >&2; exit 2; }
    need_cargo_fuzz
    fuzz build ops
    # The binary itself, so the time counts the campaign, not cargo's up-to-date check.
    bin="fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/release/ops"
    found=0
    for i in $(seq 1 "$runs"); do
      work=$(mktemp -d) artifacts=$(mktemp -d) log=$(mktemp)
      mkdir -p fuzz/corpus/ops fuzz/regressions/ops
      seeds=("fuzz/corpus/ops" "fuzz/regressions/ops")
      [ "$empty" = 1 ] && seeds=()
      start=$(date +%s.%N)
      "$bin" "$work" ${seeds[@]+"${seeds[@]}"} -max_total_time="$time" \
        -timeout="$timeout_secs" -seed="$i" -artifact_prefix="$artifacts/" >"$log" 2>&1 || true
      secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
      if ls "$artifacts"/crash-* >/dev/null 2>&1; then
        execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 || true)
        execs=${execs#\#}
        when="while loading the corpus"
        [ -n "$execs" ] && when="after $execs executions"
        printf 'run %d: found in %ss, %s: %s\n' "$i" "$secs" "$when" \
          "$(grep -m1 -E '^step [0-9]+:' "$log" || echo '?')"
        found=$((found + 1))
      else
        printf 'run %d: not found in %ss\n' "$i" "$time"
      fi
      rm -rf "$work" "$artifacts" "$log"
    done
    echo "found $found of $runs"
    [ "$found" -eq "$runs" ]
    ;;
  *)
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
    [ "$cmd" = help ] || exit 2
    ;;
esac
