#!/usr/bin/env bash
# The management API under load from wrk: reads of the check list and
# writes of new checks, on SQLite and on PostgreSQL; requests/s and p99.
#
#   apt-get install wrk
#   cargo build --release -p tocsin -p tocsin-watchdog (the README's build)
#   bench/api.sh          # POSTGRES=postgres://postgres@127.0.0.1:5432 CONNECTIONS=32 DURATION=10
set -euo pipefail
cd "$(dirname "$0")/.."
TOCSIN=${TOCSIN:-target/release/tocsin}
POSTGRES=${POSTGRES:-postgres://postgres@127.0.0.1:5432}
CONNECTIONS=${CONNECTIONS:-32}
DURATION=${DURATION:-10}
CHECKS=${CHECKS:-1000}
command -v wrk >/dev/null || { echo "missing: wrk (apt-get install wrk)" >&2; exit 2; }
[ -x "$TOCSIN" ] || { echo "missing: $TOCSIN (cargo build --release -p tocsin -p tocsin-watchdog)" >&2; exit 2; }

work=$(mktemp -d)
server=
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

cat > "$work/write.lua" <<'LUA'
local threads = 0
function setup(thread) threads = threads + 1; thread:set("id", threads) end
local n = 0
function request()
  n = n + 1
  local body = string.format('{"name":"w-%d-%d","plugin":"http","target":"https://example.com","paused":true}', id, n)
  return wrk.format("POST", "/api/v1/checks", {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. os.getenv("TOKEN")}, body)
end
LUA

# "<requests/s> <p99>" from wrk --latency
measure() {
    wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$@" \
        | awk '/Requests\/sec/ {rate = int($2)} /^ +99%/ {p99 = $2} /Non-2xx/ {bad = $4} END {print rate, p99, (bad ? bad : 0)}'
}

run() {
    local backend=$1; shift
    rm -rf "$work/data"
    "$TOCSIN" serve --listen 127.0.0.1:17400 --data-dir "$work/data" "$@" > "$work/serve.log" 2>&1 &
    server=$!
    for _ in $(seq 600); do grep -q "listening on" "$work/serve.log" && break; sleep 0.1; done
    export TOKEN=$(sed -n 's/.*export TOCSIN_TOKEN=//p' "$work/serve.log")
    python3 - "$CHECKS" > "$work/checks.json" <<'PY'
import json, sys
n = int(sys.argv[1])
print(json.dumps({"checks": [{"name": f"c{i:05d}", "plugin": "http", "target": "https://example.com", "paused": True, "tags": ["bench"]} for i in range(n)]}))
PY
    curl -fsS -o /dev/null -X POST -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \
        --data-binary @"$work/checks.json" http://127.0.0.1:17400/api/v1/apply
    read -r rate p99 bad < <(measure -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:17400/api/v1/checks?limit=100")
    printf '%-10s %-28s %8s req/s   p99 %8s   non-2xx %s\n' "$backend" "GET /api/v1/checks?limit=100" "$rate" "$p99" "$bad"
    read -r rate p99 bad < <(measure -s "$work/write.lua" http://127.0.0.1:17400)
    printf '%-10s %-28s %8s req/s   p99 %8s   non-2xx %s\n' "$backend" "POST /api/v1/checks" "$rate" "$p99" "$bad"
    kill "$server"; wait "$server" 2>/dev/null || true; server=
}

echo "connections=$CONNECTIONS duration=${DURATION}s checks=$CHECKS cores=$(nproc)"
run sqlite
db="tocsin_api_bench_$$"
psql "$POSTGRES/postgres" -qc "CREATE DATABASE $db" >/dev/null
run postgres --database-url "$POSTGRES/$db"
psql "$POSTGRES/postgres" -qc "DROP DATABASE $db" >/dev/null
