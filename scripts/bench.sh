#!/usr/bin/env bash
# Runs the benchmarks and prints their ratios as tables: what the ledger costs against raw sqlx
# (with the A/A control beside it), whether throughput holds past the pool's size, and the
# operations against the wire floor and pgbench. Criterion's HTML report (its plots) is in
# target/criterion/report/index.html as usual; the tables are also written to
# target/criterion/ratios.txt.
#
#   scripts/bench.sh                    # everything: SQLite, and PostgreSQL with LEAKPROOF_PG_URL
#   scripts/bench.sh --quick            # shorter samples (noisier), for a first look
#   scripts/bench.sh --only pool        # one benchmark (pool | ops)
#   scripts/bench.sh -- cycle/size8     # criterion arguments, e.g. a filter
#   scripts/bench.sh --report           # only print the tables of the last run
#
# Only results written by this run are tabulated (older ones under target/criterion are kept
# by criterion but ignored here), so every ratio compares points measured side by side.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out_dir=${CARGO_TARGET_DIR:-$root/target}/criterion
benches=(pool ops)
criterion_args=()
report_only=false
while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) criterion_args+=(--warm-up-time 0.2 --measurement-time 0.5); shift ;;
        --only) benches=("$2"); shift 2 ;;
        --report) report_only=true; shift ;;
        --) shift; criterion_args+=("$@"); break ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

mkdir -p "$out_dir"
stamp="$out_dir/.bench-run-start"
if ! $report_only; then
    # Build, then run the binaries ourselves: `cargo bench` would hold the target directory's
    # lock for the whole run and stall everyone else's cargo in this tree.
    built=$(scripts/bench-executables.sh "${benches[@]}")
    mapfile -t executables <<< "$built"
    touch "$stamp"
    rm -f "$out_dir"/pgbench-before.json "$out_dir"/pgbench-after.json
    for i in "${!benches[@]}"; do
        # pgbench right before and right after the ops benchmark: the server's ceiling on the
        # same machine, in the same minutes; the two runs show how much the machine drifted.
        with_pgbench=false
        if [[ "${benches[$i]}" == ops && -n "${LEAKPROOF_PG_URL:-}" ]]; then
            with_pgbench=true
            CRITERION_HOME="$out_dir" PGBENCH_OUT=pgbench-before.json scripts/pgbench.sh
        fi
        # With pgbench's database ready, ops also runs interleaved rounds against pgbench.
        pgbench_url=""
        if $with_pgbench; then
            base=${LEAKPROOF_PG_URL%%\?*}
            pgbench_url="${base%/*}/leakproof_pgbench"
        fi
        CRITERION_HOME="$out_dir" LEAKPROOF_PGBENCH_URL="$pgbench_url" \
            "${executables[$i]}" --bench "${criterion_args[@]}" | tee "$out_dir/${benches[$i]}.log"
        if $with_pgbench; then
            CRITERION_HOME="$out_dir" PGBENCH_OUT=pgbench-after.json scripts/pgbench.sh
        fi
    done
fi
[[ -f "$stamp" ]] || { echo "bench.sh: no run recorded yet" >&2; exit 2; }

python3 - "$out_dir" "$stamp" <<'PY' | tee "$out_dir/ratios.txt"
import glob, json, os, statistics, sys

out_dir, stamp = sys.argv[1], sys.argv[2]
since = os.path.getmtime(stamp) - 1

# (group, function, value) -> nanoseconds per operation (criterion's median estimate).
ns = {}
for path in glob.glob(os.path.join(out_dir, "**", "new", "benchmark.json"), recursive=True):
    if os.path.getmtime(path) < since:
        continue
    with open(path) as f:
        bench = json.load(f)
    with open(os.path.join(os.path.dirname(path), "estimates.json")) as f:
        est = json.load(f)
    point = (est.get("median") or est["mean"])["point_estimate"]
    ns[(bench["group_id"], bench.get("function_id"), bench.get("value_str"))] = point

def per_sec(x):
    return 1e9 / x if x else float("nan")

def fmt_rate(x):
    return f"{x:>10,.0f}" if x == x else f"{'-':>10}"

def fmt_ratio(x):
    return f"{x:>7.3f}" if x == x else f"{'-':>7}"

groups = sorted({g for (g, _, _) in ns})
nan = float("nan")

# ---- pool: wrapped against raw ----------------------------------------------------------
# The interleaved concurrency sweeps (benches/common, concurrency_sweep): median ops/s per
# task or client count, every count measured in each round; the no-collapse check reads these.
# records: each sweep's whole line, for its intervals and the machine section below.
sweeps, records = {}, {}
def interval(g, c):
    """The paired figure's 95% interval as text (benches/common/stats.rs, median_interval)."""
    low, high = records[g].get("largest_over_interval", {}).get(str(c), (None, None))
    # serde_json writes a NaN as null.
    ok = isinstance(low, float) and isinstance(high, float) and low == low
    return f" ({low:.2f}-{high:.2f})" if ok else ""
for log in ("pool.log", "ops.log"):
    path = os.path.join(out_dir, log)
    if os.path.exists(path) and os.path.getmtime(path) >= since:
        with open(path) as f:
            for line in f:
                if line.startswith("sweep\t"):
                    r = json.loads(line.split("\t", 1)[1])
                    paired = {int(c): v for c, v in r.get("largest_over", {}).items()}
                    sweeps[r["group"]] = ({int(c): v for c, v in r["rates"].items()}, r["rounds"],
                                          paired)
                    records[r["group"]] = r

# The interleaved ratios benches/pool.rs prints (`ratio\t{json}`), by (group, tasks).
interleaved = {}
pool_log = os.path.join(out_dir, "pool.log")
if os.path.exists(pool_log) and os.path.getmtime(pool_log) >= since:
    with open(pool_log) as f:
        for line in f:
            if line.startswith("ratio\t"):
                r = json.loads(line.split("\t", 1)[1])
                interleaved[(r["group"], r["tasks"])] = r

pool_groups = [g for g in groups if g.startswith("pool/")]
pool_groups += [g for (g, _) in interleaved if g not in pool_groups]
def pool_key(g):
    _, backend, workload, size, tba = g.split("/")
    return (backend, workload, tba, int(size[4:]))
pool_groups.sort(key=pool_key)
overhead = {"cycle": [], "select1": []}
aa = {"cycle": [], "select1": []}
collapse, collapse_paired, collapse_paired_past = [], [], []
if pool_groups:
    print("== pool: our guards (wrapped) against the same sqlx pool used raw ==")
    print("   ops/s: criterion's median, each side measured in its own window")
    print("   wrap/raw, A/A: interleaved rounds (raw, wrapped, raw again; median over rounds) of")
    print("   time per op: wrapped over the mean of the raws around it; raw again over raw")
    print("   crit w/r: the same ratio from criterion's separate windows, for comparison")
    print("   no collapse: wrapped ops/s at 128 tasks over each task count's, from the interleaved")
    print("   concurrency sweep (every task count in each round): paired, the median over the")
    print("   rounds of the ratio within a round, against the count it is lowest for, with its")
    print("   95% interval (45 rounds; 45 more, twice at most, while it holds 0.90); medians,")
    print("   128's median rate over the best median rate (the best of five noisy figures)")
    print(f"{'group':<30} {'tasks':>5} {'wrapped/s':>10} {'raw/s':>10} {'raw_aa/s':>10} "
          f"{'wrap/raw':>8} {'A/A':>7} {'crit w/r':>8}")
    for g in pool_groups:
        workload = g.split("/")[2]
        tasks = sorted({int(v) for (gg, _, v) in ns if gg == g} |
                       {t for (gg, t) in interleaved if gg == g})
        rates = {}
        for t in tasks:
            w, r, a = (ns.get((g, side, str(t)), nan) for side in ("wrapped", "raw", "raw_aa"))
            crit = w / ((r + a) / 2)
            inter = interleaved.get((g, t))
            ratio = inter["wrapped_over_raw"] if inter else nan
            control = inter["aa"] if inter else nan
            if ratio == ratio:
                overhead[workload].append((ratio, g, t))
                aa[workload].append(control)
            # Without a sweep (a filtered run), the no-collapse check reads criterion's rates.
            if w == w:
                rates[t] = per_sec(w)
            print(f"{g[5:]:<30} {t:>5} {fmt_rate(per_sec(w))} {fmt_rate(per_sec(r))} "
                  f"{fmt_rate(per_sec(a))} {fmt_ratio(ratio):>8} {fmt_ratio(control)} "
                  f"{fmt_ratio(crit):>8}")
        paired = {}
        if g in sweeps:
            rates, _, paired = sweeps[g]
        size = int(g.split("/")[3].removeprefix("size"))
        if 128 in rates and len(rates) > 1:
            best = max(rates.values())
            collapse.append((rates[128] / best, g, ""))
        if paired:
            low = min(paired, key=paired.get)
            collapse_paired.append((paired[low], g, interval(g, low)))
            past = min((t for t in paired if t >= size), key=paired.get)
            collapse_paired_past.append((paired[past], g, interval(g, past)))
    print()
    for workload in ("cycle", "select1"):
        if not overhead[workload]:
            continue
        ratios = [r for r, _, _ in overhead[workload]]
        worst = max(overhead[workload])
        controls = aa[workload]
        spread = statistics.median(abs(c - 1) for c in controls)
        print(f"ledger overhead, {workload}: wrapped/raw median {statistics.median(ratios):.3f} "
              f"over {len(ratios)} points (worst {worst[0]:.3f} at {worst[1][5:]} x{worst[2]}); "
              f"A/A median {statistics.median(controls):.3f}, median |A/A - 1| {spread:.3f}, "
              f"range {min(controls):.3f}..{max(controls):.3f}"
              + ("   [target: <= 1.02]" if workload == "cycle" else ""))
    def collapse_line(what, figures, target):
        # (figure, group, its 95% interval as text)
        worst = min(figures)
        # The group without its first part ("pool/", "sustained/").
        name = lambda g: g.split("/", 1)[1]
        low = [f"{name(g)} ({c:.2f}{ci})" for c, g, ci in sorted(figures) if c < 0.9]
        print(f"   {what}: {worst[0]:.2f}{worst[2]} in the worst group ({name(worst[1])}), median "
              f"{statistics.median(c for c, _, _ in figures):.2f} over {len(figures)} groups"
              + ("   [target: >= 0.90]" if target else ""))
        if low:
            print("      below 0.90: " + ", ".join(low))
    if collapse_paired or collapse:
        print("no collapse past the pool size: wrapped throughput at 128 tasks over the best at "
              "any concurrency")
    if collapse_paired:
        collapse_line("paired within rounds", collapse_paired, True)
    if collapse:
        collapse_line("medians of the rounds", collapse, not collapse_paired)
    if collapse_paired_past:
        collapse_line("paired, against the counts from the pool's size up (past it, callers "
                      "wait for one another)", collapse_paired_past, False)
    # The same sweep in slices of seconds, for SELECT 1 on one connection (benches/pool.rs,
    # Config::sustained): the runtime's modes last longer than the short sweep's slices.
    sustained = []
    for g in sorted(g for g in sweeps if g.startswith("sustained/")):
        rates, rounds, paired = sweeps[g]
        if not paired:
            continue
        low = min(paired, key=paired.get)
        sustained.append((paired[low], g, interval(g, low)))
        slice_s = records[g].get("slice_ms", 0) / 1000
        print(f"sustained {g.split('/', 1)[1]}: {rounds} rounds of {slice_s:g} s slices, median "
              "ops/s " + ", ".join(f"{c}: {v:,.0f}" for c, v in sorted(rates.items()))
              + f"; 128 over {low}, paired: {paired[low]:.2f}{interval(g, low)}")
    if sustained:
        collapse_line("sustained (slices of seconds), paired within rounds", sustained, True)
    print()

# ---- ops: operations against the wire and pgbench ---------------------------------------
# pgbench tps by workload and clients: the mean of the runs before and after the ops benchmark.
pgbench, drift = {}, []
runs = []
for name in ("pgbench-before.json", "pgbench-after.json", "pgbench.json"):
    path = os.path.join(out_dir, name)
    if os.path.exists(path) and os.path.getmtime(path) >= since:
        with open(path) as f:
            runs.append(json.load(f)["tps"])
    if name == "pgbench-after.json" and runs:
        break
for workload in ("select-only", "introspect", "select1"):
    for run in runs:
        for c, tps in run.get(workload, {}).items():
            pgbench.setdefault(workload, {}).setdefault(int(c), []).append(tps)
for workload, by_clients in pgbench.items():
    for c, values in by_clients.items():
        if len(values) > 1:
            drift.append((max(values) / min(values), workload, c))
        by_clients[c] = statistics.mean(values)
def pgb(workload, c):
    return pgbench.get(workload, {}).get(c, nan)

ops_groups = [g for g in groups if g.startswith("ops/")]
if ops_groups:
    print("== ops: operations per second against concurrency ==")
    print("   raw_pool: introspect's statement on the raw sqlx pool (no ledger, no hashing);")
    print("   wire_stmt / wire_sel1: that statement / SELECT 1 on dedicated connections, no pool")
    print("   (run up to the pool's size); pgb: pgbench -M prepared, -S (pk read), the same")
    print("   statement (stmt), SELECT 1 (sel1); mean of the runs before and after the benchmark")
    for backend in ("sqlite", "postgres"):
        names = [g for g in ops_groups if g.split("/")[1] == backend]
        if not names:
            continue
        print(f"-- {backend}")
        print(f"{'op':<10} {'clients':>7} {'op/s':>9} {'raw_pool':>9} {'wire_stmt':>9} "
              f"{'wire_sel1':>9} {'pgb -S':>9} {'pgb stmt':>9} {'pgb sel1':>9} "
              f"{'op/pgb-S':>8} {'op/stmt':>7}")
        for op in ("introspect", "exchange", "publish", "mixed"):
            g = f"ops/{backend}/{op}"
            clients = sorted({int(v) for (gg, _, v) in ns if gg == g})
            rates = {}
            for c in clients:
                rate = per_sec(ns.get((g, "op", str(c)), nan))
                rates[c] = rate
                side = lambda f: per_sec(ns.get((g, f, str(c)), nan))
                on_pg = backend == "postgres" and op == "introspect"
                s_only, stmt, sel1 = ((pgb(w, c) if on_pg else nan)
                                      for w in ("select-only", "introspect", "select1"))
                r = lambda x: f"{x:>9,.0f}" if x == x else f"{'-':>9}"
                print(f"{op:<10} {c:>7} {r(rate)} {r(side('raw_pool_stmt'))} "
                      f"{r(side('wire_stmt'))} {r(side('wire_select1'))} {r(s_only)} {r(stmt)} "
                      f"{r(sel1)} {fmt_ratio(rate / s_only):>8} {fmt_ratio(rate / stmt)}")
            if g in sweeps:
                swept, rounds, paired = sweeps[g]
                best = max(swept, key=swept.get)
                print(f"{'':<10} interleaved sweep, median of {rounds} rounds: "
                      + ", ".join(f"{c}: {v:,.0f}" for c, v in sorted(swept.items())))
                if paired:
                    low = min(paired, key=paired.get)
                    print(f"{'':<10} at 128 clients, paired within rounds: {paired[low]:.2f}"
                          f"{interval(g, low)} of {low} clients'   [target: >= 0.90]")
                print(f"{'':<10} at 128 clients, medians: {swept[128] / swept[best]:.2f} of the "
                      f"best ({best} clients)" + ("" if paired else "   [target: >= 0.90]"))
            elif 128 in rates and len(rates) > 1:
                best = max(rates.values())
                print(f"{'':<10} at 128 clients: {rates[128] / best:.2f} of the best "
                      f"(criterion's separate windows)   [target: >= 0.90]")
        if backend == "postgres":
            intro8 = per_sec(ns.get(("ops/postgres/introspect", "op", "8"), nan))
            if pgb("select-only", 8) == pgb("select-only", 8):
                print(f"introspect at 8 clients: {intro8:,.0f}/s = "
                      f"{intro8 / pgb('select-only', 8):.2f} x pgbench -S prepared "
                      f"({pgb('select-only', 8):,.0f} tps)   [target: >= 0.80]; "
                      f"{intro8 / pgb('introspect', 8):.2f} x pgbench running its own statement")
            else:
                print("introspect against pgbench: no pgbench result from this run "
                      "(scripts/pgbench.sh runs with LEAKPROOF_PG_URL)")
            ops_log = os.path.join(out_dir, "ops.log")
            if os.path.exists(ops_log) and os.path.getmtime(ops_log) >= since:
                with open(ops_log) as f:
                    for line in f:
                        if not line.startswith("pgbench\t"):
                            continue
                        r = json.loads(line.split("\t", 1)[1])
                        print(f"interleaved, {r['clients']} clients, median of {r['rounds']} rounds: "
                              f"introspect {r['op']:,.0f}/s, raw pool {r['raw_pool_stmt']:,.0f}/s, "
                              f"dedicated connections {r['wire_stmt']:,.0f}/s; pgbench -S "
                              f"{r['pgbench_select_only']:,.0f}, its statement {r['pgbench_stmt']:,.0f} tps")
                        print(f"   introspect / pgbench -S = {r['op_over_select_only']:.2f}   "
                              f"[target: >= 0.80]; / pgbench same statement = {r['op_over_stmt']:.2f}; "
                              f"raw pool / -S = {r['raw_pool_over_select_only']:.2f}; "
                              f"dedicated / -S = {r['wire_over_select_only']:.2f}, "
                              f"/ same statement = {r['wire_over_stmt']:.2f}")
                        print(f"   where the rest goes: raw pool / dedicated connections = "
                              f"{r['raw_pool_over_wire']:.2f} (checkout and release, with sqlx's "
                              f"release ping); introspect / raw pool = {r['op_over_raw_pool']:.2f} "
                              f"(our guard, hashing, decoding)")
            if drift:
                worst = max(drift)
                print(f"pgbench drift between the runs before and after: up to "
                      f"{(worst[0] - 1) * 100:.0f}% ({worst[1]}, {worst[2]} clients)")
    print()

# ---- the machine: CPU other processes took during the sweeps (benches/common/cpu.rs) -----
# SQLite runs in the benchmark's process: a round in which others took more than a tenth of
# the CPU is run again (at most 45 times a sweep). On PostgreSQL the server's processes are
# the others, so there it is only reported.
if records:
    def share(x):
        return f"{x * 100:.0f}%" if x is not None else "-"
    print("== the machine during the sweeps: the share of CPU other processes took per round ==")
    for backend in ("sqlite", "postgres"):
        mine = {g: r for g, r in records.items() if g.split("/")[1] == backend}
        if not mine:
            continue
        worst = max((r.get("others_cpu", {}).get("max") or 0, g) for g, r in mine.items())
        repeated = sum(r.get("rounds_repeated", 0) for r in mine.values())
        rounds = sum(r["rounds"] for r in mine.values())
        note = " (the server's processes included)" if backend == "postgres" else ""
        print(f"{backend}: worst round {share(worst[0])} ({worst[1]}){note}; "
              f"{repeated} rounds run again for a busy machine, {rounds} kept")
        for g, r in sorted(mine.items()):
            others, again = r.get("others_cpu", {}), r.get("rounds_repeated", 0)
            if again:
                print(f"   {g}: {again} run again; kept rounds' median {share(others.get('median'))}, "
                      f"worst {share(others.get('max'))}")
    # The CPU the pool's server processes spent per operation (benches/common/server.rs):
    # beside each PostgreSQL sweep, whether the count its figure is lowest against ran on a
    # faster server than 128 did.
    served = {g: r for g, r in sorted(records.items()) if r.get("server_us_per_op")}
    if served:
        print("postgres: the server's CPU per operation (µs, median per count over the slices); "
              "128's over that at the count the paired figure is lowest for")
        for g, r in served.items():
            us = {int(c): v for c, v in r["server_us_per_op"].items()}
            paired = sweeps.get(g, ({}, 0, {}))[2]
            low = min(paired, key=paired.get) if paired else None
            versus = (f"; 128 over {low}: {us[128] / us[low]:.2f}"
                      if low in us and 128 in us and us[low] > 0 else "")
            print(f"   {g}: " + ", ".join(f"{c}: {v:.1f}" for c, v in sorted(us.items())) + versus)
    print()
if not ns:
    print("no criterion results from this run (test mode and --list write none)")
PY
