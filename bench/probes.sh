#!/usr/bin/env bash
# Probes per second against one local target: Tocsin's http and tcp checks
# versus Prometheus blackbox_exporter's http_2xx and tcp_connect modules,
# same target, same concurrency, same run; plus the target's own ceiling.
#
#   apt-get install nginx wrk prometheus-blackbox-exporter
#   cargo build --release -p tocsin -p tocsin-watchdog (the README's build)
#   bench/probes.sh                    # CONCURRENCY=64 DURATION=10 by default
#
# Both probers open a new connection per probe (that is what a probe
# measures); the ceiling is wrk with `Connection: close` against nginx.
set -euo pipefail
cd "$(dirname "$0")/.."
CONCURRENCY=${CONCURRENCY:-64}
DURATION=${DURATION:-10}
TOCSIN=${TOCSIN:-target/release/tocsin}
for tool in nginx wrk prometheus-blackbox-exporter "$TOCSIN"; do
    command -v "$tool" >/dev/null || { echo "missing: $tool (see the top of $0)" >&2; exit 2; }
done

work=$(mktemp -d)
cleanup() {
    [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
    [ -n "${blackbox:-}" ] && kill "$blackbox" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

cat > "$work/nginx.conf" <<CONF
worker_processes auto;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 8192; }
http {
    access_log off;
    server {
        listen 127.0.0.1:18080 backlog=4096;
        location / { return 200 "ok\n"; }
    }
}
CONF
nginx -c "$work/nginx.conf" -p "$work"

cat > "$work/blackbox.yml" <<CONF
modules:
  http_2xx:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
  tcp_connect:
    prober: tcp
    timeout: 5s
    tcp:
      preferred_ip_protocol: ip4
CONF
prometheus-blackbox-exporter --config.file="$work/blackbox.yml" --web.listen-address=127.0.0.1:19115 --log.level=error &
blackbox=$!
for _ in $(seq 50); do curl -fs http://127.0.0.1:19115/ >/dev/null 2>&1 && break; sleep 0.1; done

# requests/s from wrk's summary
wrk_rate() { wrk -t2 -c"$CONCURRENCY" -d"${DURATION}s" "$@" | awk '/Requests\/sec/ {print int($2)}'; }
# probes/s from tocsin bench probes
tocsin_rate() { "$TOCSIN" bench probes --concurrency "$CONCURRENCY" --duration "${DURATION}s" --allow 127.0.0.1 "$@" 2>/dev/null | sed -n 's/.*probes_per_second=\([0-9]*\).*/\1/p'; }
# probes that failed, from blackbox's own metric
check_probe() { curl -fs "http://127.0.0.1:19115/probe?module=$1&target=$2" | grep -q '^probe_success 1' || { echo "blackbox $1 probe of $2 fails" >&2; exit 1; }; }

check_probe http_2xx http://127.0.0.1:18080/
check_probe tcp_connect 127.0.0.1:18080

echo "concurrency=$CONCURRENCY duration=${DURATION}s cores=$(nproc)"
ceiling=$(wrk_rate -H "Connection: close" http://127.0.0.1:18080/)
bb_http=$(wrk_rate "http://127.0.0.1:19115/probe?module=http_2xx&target=http://127.0.0.1:18080/")
tocsin_http=$(tocsin_rate --plugin http --target http://127.0.0.1:18080/)
bb_tcp=$(wrk_rate "http://127.0.0.1:19115/probe?module=tcp_connect&target=127.0.0.1:18080")
tocsin_tcp=$(tocsin_rate --plugin tcp --target 127.0.0.1:18080)

printf '%-44s %10s\n' "measure" "per second"
printf '%-44s %10s\n' "nginx ceiling (wrk, new connection each)" "$ceiling"
printf '%-44s %10s\n' "blackbox_exporter http_2xx" "$bb_http"
printf '%-44s %10s\n' "tocsin http check" "$tocsin_http"
printf '%-44s %10s\n' "blackbox_exporter tcp_connect" "$bb_tcp"
printf '%-44s %10s\n' "tocsin tcp check" "$tocsin_tcp"
awk -v a="$tocsin_http" -v b="$bb_http" -v c="$tocsin_tcp" -v d="$bb_tcp" 'BEGIN {
    printf "ratio http tocsin/blackbox: %.1fx\nratio tcp tocsin/blackbox:  %.1fx\n", a / b, c / d }'
