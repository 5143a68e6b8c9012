#!/usr/bin/env bash
# Latency of other members' exchanges while 1,100 sockets without certificates reconnect
# against the provider (issue #12 item 2; docs/BENCHMARKS.md, "Under a socket flood"): the
# provider serves with the 1,024 soft descriptor limit a service commonly gets; the load
# generator asks it at a fixed rate, first alone, then with the flood running, and the two
# runs are printed side by side.
#
#   bash bench/flood.sh
#
# Knobs (environment): FLOOD_SECONDS (30, each run), FLOOD_RATE (100 exchanges/s),
# FLOOD_CONNECTIONS (4), FLOOD_SOCKETS (1100), FLOOD_PORT_DIGIT (8: the demo's ports 7441…
# become 8441…), FLOOD_SERVER_CPU (0), FLOOD_CLIENT_CPU (1), FLOOD_DIR (default: a new
# temporary directory, kept), CARGO_TARGET_DIR. Needs Linux, taskset, curl, python3.
set -euo pipefail
bench_name=flood
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

seconds=${FLOOD_SECONDS:-30}
rate=${FLOOD_RATE:-100}
connections=${FLOOD_CONNECTIONS:-4}
sockets=${FLOOD_SOCKETS:-1100}
server_cpu=${FLOOD_SERVER_CPU:-0}
client_cpu=${FLOOD_CLIENT_CPU:-1}
for tool in taskset curl python3; do
  command -v "$tool" >/dev/null || die "needs $tool"
done

bench_build
work=${FLOOD_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/simpul-flood.XXXXXX")}
bench_federation "$work" "${FLOOD_PORT_DIGIT:-8}"
cd "$work"

server_pid=
flood_pid=
stop() {
  [ -n "$flood_pid" ] && kill "$flood_pid" 2>/dev/null || true
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
}
trap stop EXIT

say "serving $provider alone on CPU $server_cpu with a soft open-file limit of 1024"
# It raises the soft limit to the hard one before it accepts (docs/OPERATIONS.md §7.4).
(ulimit -Sn 1024 && RUST_LOG=warn exec taskset -c "$server_cpu" "$simpul" serve --member "$provider") \
  >serve.log 2>&1 &
server_pid=$!
wait_port "$gateway_port" 120 "$server_pid" || die "simpul serve did not start (see $work/serve.log)"

run() { # NAME: one paced run of the generator, as JSON in NAME.json
  taskset -c "$client_cpu" "$generator" load --config load.toml --connections "$connections" \
    --duration "${seconds}s" --rate "$rate" --server-pid "$server_pid" --json >"$1.json"
}
refused() { bench_metrics "$work" | awk '/^simpul_connections_refused_total\{/ && /listener="gateway"/ { n += $NF } END { print n + 0 }'; }

say "alone: $rate exchanges/s over $connections connections for $seconds s"
run alone
refused_before=$(refused)

say "with $sockets sockets from 127.0.0.2 reconnecting (CPU $client_cpu)"
taskset -c "$client_cpu" python3 "$bench_repo/bench/flood.py" 127.0.0.1 "$gateway_port" "$sockets" 127.0.0.2 \
  >flood.txt 2>&1 &
flood_pid=$!
sleep 3
run flooded
refused_after=$(refused)
kill "$flood_pid"
wait "$flood_pid" || true
flood_pid=
grep -c 'Too many open files' serve.log >/dev/null && say "the provider ran out of descriptors (see serve.log)"

field() { sed -n "s/^ *\"$2\": \([0-9.]*\).*/\1/p" "$1.json" | head -n 1; }
echo
echo "== $provider under a flood of $sockets reconnecting sockets, $(date -u +%F), $work =="
printf '%-8s %10s %8s %8s %9s %9s %9s %9s\n' run "answered" "errors" "p50 ms" "p90 ms" "p99 ms" "max ms" "cpu µs/x"
for r in alone flooded; do
  printf '%-8s %10s %8s %8.2f %9.2f %9.2f %9.2f %9.0f\n' "$r" "$(field $r ok)" "$(field $r errors)" \
    "$(awk -v v="$(field $r p50_us)" 'BEGIN { print v / 1000 }')" \
    "$(awk -v v="$(field $r p90_us)" 'BEGIN { print v / 1000 }')" \
    "$(awk -v v="$(field $r p99_us)" 'BEGIN { print v / 1000 }')" \
    "$(awk -v v="$(field $r max_us)" 'BEGIN { print v / 1000 }')" \
    "$(field $r cpu_us_per_exchange)"
done
awk -v a="$(field alone p99_us)" -v f="$(field flooded p99_us)" \
  'BEGIN { if (a > 0) printf "p99 flooded / alone: %.2f\n", f / a }'
cat flood.txt
echo "connections the provider refused over its bounds during the flood: $((refused_after - refused_before))"
echo "'Too many open files' lines in the provider's log: $(grep -c 'Too many open files' serve.log || true)"
