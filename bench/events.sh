#!/usr/bin/env bash
# Change notifications through two real gateways (issue #17; docs/BENCHMARKS.md, "Change
# notifications"): BP2MI's SISKOP2MI emits `placement.changed` through BP2MI's local face,
# BP2MI's gateway signs each event, keeps it in its outbox and delivers it to Kemlu's gateway,
# which checks each event and keeps it in its inbox — each gateway its own `simpul serve
# --member` process (release build, SQLite, durable audit log and event store on both sides,
# mTLS between them). The load is gateway/examples/events_load.rs: EVENTS_N events as fast as
# 8 connections allow, then EVENTS_N more paced at EVENTS_RATE per second.
#
#   bash bench/events.sh                          # 5,000 events each way, paced at 200/s
#   EVENTS_N=20000 EVENTS_RATE=500 bash bench/events.sh
#
# It prints a Markdown table, one row per run: events emitted per second (the emitter's 202s),
# events delivered per second end to end (from the first emission to the last event held by
# Kemlu's gateway), and the lag of each event from its 202 to Kemlu's inbox row (p50, p99,
# max, ms); then each gateway's CPU per event over both runs (utime + stime of
# /proc/PID/stat) and peak RSS (VmHWM). Kemlu's webhook (nobody listens in this run) is
# retried in the background and does not enter the figures.
#
# Knobs: EVENTS_N (5000), EVENTS_RATE (200), EVENTS_PORT_DIGIT (the demo's ports 7441… become
# D441…; default the first free of 6 5 4 3 2), CARGO_TARGET_DIR. Builds release first.
set -euo pipefail
bench_name=events
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

n=${EVENTS_N:-5000}
rate=${EVENTS_RATE:-200}
[[ $n =~ ^[0-9]+$ ]] && ((n >= 1)) || die "EVENTS_N=$n: a whole number of events, at least 1"
[[ $rate =~ ^[0-9]+$ ]] && ((rate >= 1)) || die "EVENTS_RATE=$rate: events per second, at least 1"
for tool in curl:curl awk:mawk cargo:cargo getconf:libc-bin; do
  command -v "${tool%%:*}" >/dev/null || die "needs ${tool%%:*}: apt-get install ${tool#*:}"
done

say "building release (cargo build --release -p simpul -p simpul-gateway --example events_load)"
(cd "$bench_repo" && cargo build --release -p simpul && cargo build --release -p simpul-gateway --example events_load)
load=$bench_target/release/examples/events_load

digit=$(port_digit EVENTS_PORT_DIGIT)

work=$(mktemp -d "${TMPDIR:-/tmp}/simpul-events.XXXXXX")
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
started_at=$(date -u '+%Y-%m-%d %H:%M UTC')
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

bench_federation "$work" "$digit"
cd "$work"
declare -A pid_of=()
for member in ID:GOV:BP2MI ID:GOV:KEMLU; do
  (RUST_LOG=warn exec "$simpul" serve --member "$member" >"serve-${member//:/_}.log" 2>&1) &
  pid_of[$member]=$!
  pids+=("$!")
done
wait_port "${digit}643" 120 "${pid_of[ID:GOV:BP2MI]}" || die "BP2MI's gateway did not start (see $work/serve-ID_GOV_BP2MI.log)"
wait_port "${digit}441" 120 "${pid_of[ID:GOV:KEMLU]}" || die "Kemlu's gateway did not start (see $work/serve-ID_GOV_KEMLU.log)"

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
declare -A before=()
for member in "${!pid_of[@]}"; do before[$member]=$(cpu_ticks "${pid_of[$member]}"); done

echo
echo "| events | emitted | emitted/s | delivered/s end to end | lag p50 ms | lag p99 ms | lag max ms |"
echo "| ---: | --- | ---: | ---: | ---: | ---: | ---: |"
"$load" config.toml "$n" 0 8 || die "the full-speed run failed"
"$load" config.toml "$n" "$rate" 8 || die "the paced run failed"
echo
for member in ID:GOV:BP2MI ID:GOV:KEMLU; do
  pid=${pid_of[$member]}
  used=$(($(cpu_ticks "$pid") - before[$member]))
  rss=$(awk '/^VmHWM/ { print int($2 / 1024) }' "/proc/$pid/status")
  awk -v m="$member" -v t="$used" -v hz="$hz" -v n="$((2 * n))" -v rss="$rss" \
    'BEGIN { printf "%s: %.0f µs of CPU per event over both runs, peak RSS %d MiB\n", m, t / hz / n * 1e6, rss }'
done
echo
echo "Run $started_at on $(nproc) CPUs, load average before: $load_start; work directory $work"
