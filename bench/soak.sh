#!/usr/bin/env bash
# A soak of one provider gateway (docs/BENCHMARKS.md, "Soak"): the load generator drives
# Dukcapil's `simpul serve` at half its full-load rate for SOAK_SECONDS (default an hour),
# while its resident memory, open descriptors, threads and audit store are sampled into a
# CSV; at the end, the figures after warm-up and their slopes per hour.
#
#   bash bench/soak.sh                      # from a clone; builds release first
#   SOAK_SECONDS=600 bash bench/soak.sh     # a shorter run
#
# Knobs (environment): SOAK_SECONDS (3600), SOAK_SAMPLE_SECONDS (30), SOAK_WARMUP_SECONDS
# (300, left out of the summary), SOAK_PROGRESS_SECONDS (60: the generator's latency
# windows), SOAK_CONNECTIONS (32, of the paced run), SOAK_RATE (default:
# half the measured full-load rate), SOAK_PORT_DIGIT (9: the demo's ports 7441… become
# 9441…), SOAK_SERVER_CPU (0) and SOAK_GENERATOR_CPU (1) for taskset, SOAK_DIR (default: a new
# temporary directory, kept at the end), CARGO_TARGET_DIR.
#
# Needs Linux (/proc), taskset, curl, awk; about 3 KB of disk per exchange (the audit log
# keeps every exchange's record and evidence).
set -euo pipefail

soak_seconds=${SOAK_SECONDS:-3600}
sample_seconds=${SOAK_SAMPLE_SECONDS:-30}
warmup_seconds=${SOAK_WARMUP_SECONDS:-300}
progress_seconds=${SOAK_PROGRESS_SECONDS:-60}
connections=${SOAK_CONNECTIONS:-32}
port_digit=${SOAK_PORT_DIGIT:-9}
server_cpu=${SOAK_SERVER_CPU:-0}
generator_cpu=${SOAK_GENERATOR_CPU:-1}
bench_name=soak
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

for tool in taskset curl awk; do
  command -v "$tool" >/dev/null || die "needs $tool"
done

bench_build

# --- a demo federation on its own ports --------------------------------------------------
work=${SOAK_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/simpul-soak.XXXXXX")}
bench_federation "$work" "$port_digit"

server_pid=
generator_pid=
stop() {
  [ -n "$generator_pid" ] && kill "$generator_pid" 2>/dev/null || true
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
}
trap stop EXIT

cd "$work"
audit_db=data/audit-${provider//:/_}.db
say "serving $provider alone on CPU $server_cpu; its audit store is $audit_db"
RUST_LOG=warn taskset -c "$server_cpu" "$simpul" serve --member "$provider" >serve.log 2>&1 &
server_pid=$!
wait_port "$gateway_port" 120 "$server_pid" || die "simpul serve did not start (see $work/serve.log)"

# --- full load, then half of it for the soak ------------------------------------------------
say "full load: closed loop, 8 connections, 10 s (generator on CPU $generator_cpu)"
taskset -c "$generator_cpu" "$generator" load --config load.toml --connections 8 \
  --duration 10s --server-pid "$server_pid" --json >full-load.json
full_rate=$(sed -n 's/^  "exchanges_per_s": \([0-9]*\).*$/\1/p' full-load.json)
[ -n "$full_rate" ] || die "no exchanges_per_s in $work/full-load.json"
rate=${SOAK_RATE:-$(awk -v r="$full_rate" 'BEGIN { printf "%d", r / 2 }')}
say "full load $full_rate exchanges/s; soak at $rate/s over $connections connections for $soak_seconds s"

taskset -c "$generator_cpu" "$generator" load --config load.toml --connections "$connections" \
  --duration "${soak_seconds}s" --rate "$rate" --progress "${progress_seconds}s" \
  --server-pid "$server_pid" >soak.txt 2>soak-progress.log &
generator_pid=$!

# --- samples ---------------------------------------------------------------------------
records() { # the audit log's committed size, from the operator's metrics
  bench_metrics "$work" | awk '/^simpul_audit_records[{ ]/ { print $NF; exit }'
}
size() { stat -c %s "$1" 2>/dev/null || echo 0; }
status() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$server_pid/status"; }
csv=samples.csv
echo "t_s,rss_kib,fds,threads,db_bytes,wal_bytes,shm_bytes,records" >"$csv"
start=$(date +%s)
next=$start
# Until the run's end: a sample taken as the generator closes its connections is not one of
# the steady state.
while kill -0 "$generator_pid" 2>/dev/null; do
  kill -0 "$server_pid" 2>/dev/null || die "the provider exited during the soak (see $work/serve.log)"
  now=$(date +%s)
  if ((now - start < soak_seconds && now >= next)); then
    fds=$(find "/proc/$server_pid/fd" -mindepth 1 -maxdepth 1 | wc -l)
    printf '%d,%s,%s,%s,%s,%s,%s,%s\n' $((now - start)) "$(status VmRSS)" "$fds" \
      "$(status Threads)" "$(size "$audit_db")" "$(size "$audit_db-wal")" \
      "$(size "$audit_db-shm")" "$(records || true)" >>"$csv"
    while ((next <= now)); do next=$((next + sample_seconds)); done
  fi
  sleep 1
done
generator_status=0
wait "$generator_pid" || generator_status=$?
generator_pid=
kill "$server_pid"
wait "$server_pid" || true
server_pid=

# --- summary -----------------------------------------------------------------------------
echo
echo "== soak of $provider, $(date -u +%F), $work =="
echo "full load (closed loop, 8 connections, 10 s): $full_rate exchanges/s"
echo
echo "-- generator (paced at $rate/s, $connections connections, $soak_seconds s; exit $generator_status) --"
cat soak.txt
[ "$generator_status" = 0 ] || cat soak-progress.log
echo
echo "-- provider, samples every $sample_seconds s from $warmup_seconds s on (the warm-up before it left out) --"
awk -F, -v warm="$warmup_seconds" '
  NR == 1 || $1 < warm { next }
  { n++; t = $1 / 3600; split("", v)
    v["rss_kib"] = $2; v["fds"] = $3; v["threads"] = $4; v["audit_bytes"] = $5 + $6 + $7
    v["wal_bytes"] = $6
    if ($8 != "") {
      v["records"] = $8
      if ($8 > 0) { v["db_bytes_per_record"] = $5 / $8; v["bytes_per_record"] = ($5 + $6 + $7) / $8 }
    }
    for (k in v) {
      if (!(k in first)) first[k] = v[k]
      last[k] = v[k]; m[k]++; st[k] += t; sv[k] += v[k]; stt[k] += t * t; stv[k] += t * v[k]
    }
  }
  END {
    if (n < 2) { print "fewer than two samples after warm-up: nothing to summarise"; exit }
    printf "%-19s %14s %14s %16s %9s\n", "quantity", "first", "last", "slope per hour", "% of first"
    split("rss_kib fds threads audit_bytes wal_bytes records db_bytes_per_record bytes_per_record", order, " ")
    for (i = 1; i in order; i++) {
      k = order[i]; if (m[k] < 2) continue
      d = m[k] * stt[k] - st[k] * st[k]
      slope = d > 0 ? (m[k] * stv[k] - st[k] * sv[k]) / d : 0
      printf "%-19s %14.1f %14.1f %16.1f %8.2f%%\n", k, first[k], last[k], slope,
        first[k] != 0 ? 100 * slope / first[k] : 0
    }
    printf "(%d samples; slopes are least-squares fits over them)\n", n
  }' samples.csv
echo
echo "samples: $work/samples.csv; logs: $work/serve.log, $work/soak.txt, $work/soak-progress.log"
exit "$generator_status"
