#!/usr/bin/env bash
# What PostgreSQL itself can do on this machine, measured by pgbench (C, libpq, prepared
# statements) at the client counts benches/ops.rs uses, for scripts/bench.sh to set beside our
# throughput. Three workloads, each `-M prepared`:
#
#   select-only  pgbench -S: one-row primary-key read (the issue's yardstick)
#   introspect   the exact statement OAuth::introspect runs, on our schema (migrations/postgres)
#                with one client, one grant and 64 tokens
#   select1      SELECT 1: the round trip alone, beside the bench's wire_select1
#
# Runs in its own database, leakproof_pgbench, created beside the one LEAKPROOF_PG_URL names, so
# pgbench's tables never land where the tests run. Writes target/criterion/pgbench.json.
#
#   LEAKPROOF_PG_URL=postgres://postgres@127.0.0.1:5432/leakproof_bench scripts/pgbench.sh
#
# Knobs: PGBENCH_SECONDS (default 5 per point), PGBENCH_CLIENTS (default "1 2 8 32"; counts
# near the server's max_connections are refused), PGBENCH_SCALE (default 1: 100k accounts),
# PGBENCH_OUT (the file name under target/criterion, default pgbench.json).
set -euo pipefail

url=${LEAKPROOF_PG_URL:-}
if [[ -z "$url" ]]; then
    echo "pgbench.sh: set LEAKPROOF_PG_URL to a PostgreSQL URL" >&2
    exit 2
fi
for tool in pgbench psql; do
    command -v "$tool" >/dev/null || { echo "pgbench.sh: $tool is not installed" >&2; exit 2; }
done

seconds=${PGBENCH_SECONDS:-5}
clients_list=${PGBENCH_CLIENTS:-"1 2 8 32"}
scale=${PGBENCH_SCALE:-1}
cores=$(nproc)
root=$(cd "$(dirname "$0")/.." && pwd)
out_dir=${CRITERION_HOME:-${CARGO_TARGET_DIR:-$root/target}/criterion}
out_name=${PGBENCH_OUT:-pgbench.json}
mkdir -p "$out_dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The same server and user, database leakproof_pgbench; any query string (sqlx options) dropped.
base=${url%%\?*}
bench_url="${base%/*}/leakproof_pgbench"
if ! psql "$bench_url" -Atqc 'SELECT 1' >/dev/null 2>&1; then
    psql "$url" -Atqc 'CREATE DATABASE leakproof_pgbench' >/dev/null
fi

echo "pgbench: initialising scale $scale and the introspect schema in leakproof_pgbench" >&2
pgbench -i -q -s "$scale" "$bench_url" >/dev/null 2>&1
{
    echo 'SET client_min_messages = warning;'
    echo 'DROP SCHEMA IF EXISTS introspect CASCADE; CREATE SCHEMA introspect;'
    echo 'SET search_path = introspect;'
    cat "$root"/migrations/postgres/*.sql
    cat <<'SQL'
INSERT INTO users (login, login_key, created_at) VALUES ('bench', 'bench', 0);
INSERT INTO oauth_clients (client_id, name, confidential, secret_hash, scope, created_at)
    VALUES ('bench', 'bench', 1, 'x', 'publish-new publish-update', 0);
INSERT INTO oauth_grants (client_pk, user_id, created_at) VALUES (1, 1, 0);
INSERT INTO oauth_tokens
    (token_hash, kind, grant_id, client_pk, username, scope, expires_at, created_at)
    SELECT k::text, 'access', 1, 1, 'bench', 'publish-new publish-update', 4102444800, 0
    FROM generate_series(1, 64) k;
ANALYZE;
SQL
} | psql "$bench_url" -q -v ON_ERROR_STOP=1 >/dev/null

# The statement of OAuth::introspect (INTROSPECT_SQL, src/oauth/grants.rs); :k is a token's hash.
cat >"$work/introspect.sql" <<'SQL'
\set k random(1, 64)
SELECT c.id AS caller_pk, c.secret_hash, t.kind, t.scope, t.expires_at, t.revoked_at, t.rotated_at, t.client_pk AS owner_pk, t.username AS login FROM oauth_clients c LEFT JOIN oauth_tokens t ON t.token_hash = :k WHERE c.client_id = 'bench';
SQL
echo 'SELECT 1;' >"$work/select1.sql"

# One pgbench run: prints its tps, or fails loudly.
run() {
    local clients=$1
    shift
    local threads=$((clients < cores ? clients : cores))
    local result tps
    # -n: no vacuum first (nothing here writes).
    result=$(pgbench -n -M prepared -c "$clients" -j "$threads" -T "$seconds" "$@" 2>&1) || {
        echo "$result" >&2
        echo "pgbench.sh: pgbench $* failed at $clients clients" >&2
        return 1
    }
    tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$result" | tail -1)
    [[ -n "$tps" ]] || { echo "$result" >&2; echo "pgbench.sh: no tps line" >&2; return 1; }
    echo "$tps"
}

json=""
for workload in select-only introspect select1; do
    entries=""
    for clients in $clients_list; do
        case $workload in
            select-only) tps=$(run "$clients" -S "$bench_url") ;;
            introspect) tps=$(PGOPTIONS="-c search_path=introspect" \
                run "$clients" -f "$work/introspect.sql" "$bench_url") ;;
            select1) tps=$(run "$clients" -f "$work/select1.sql" "$bench_url") ;;
        esac
        printf 'pgbench %-11s -M prepared: %4d clients, %ss: %10.0f tps\n' \
            "$workload" "$clients" "$seconds" "$tps"
        entries+="${entries:+, }\"$clients\": $tps"
    done
    json+="${json:+, }\"$workload\": {$entries}"
done
printf '{"seconds": %s, "scale": %s, "tps": {%s}}\n' "$seconds" "$scale" "$json" >"$out_dir/$out_name"
echo "pgbench: recorded in $out_dir/$out_name" >&2
