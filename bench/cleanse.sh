#!/usr/bin/env bash
# `simpul cleanse` end to end through the demo federation (issue #15 item 5; docs/BENCHMARKS.md,
# "Cleansing self-reports: bench/cleanse.sh"): a civil registry large enough, ROWS self-reports
# drawn from it (`simpul demo reports`), then the cleanse — Kemlu's gateway, mTLS, both
# signatures per batch, Dukcapil's lookups, durable audit on both sides, all four gateways in
# one `simpul up` process on SQLite — timed, with the command's peak memory and the gateways'
# CPU and peak memory from /proc.
#
#   bash bench/cleanse.sh              # 2,406,163 rows, as the seed's portal held
#   bash bench/cleanse.sh 200000       # fewer
#
# Knobs (environment): CLEANSE_PORT_DIGIT (the demo's ports 7441… become D441…; default 6),
# CLEANSE_DIR (default a new /tmp/simpul-cleanse.XXXXXX, kept), CARGO_TARGET_DIR. Builds
# release first. The registry of 2.1 million people takes about 1 GB, the work directory of
# the cleanse about 0.8 GB per million rows.

set -euo pipefail
bench_name=cleanse
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

rows=${1:-2406163}
digit=${CLEANSE_PORT_DIGIT:-6}
work=${CLEANSE_DIR:-$(mktemp -d /tmp/simpul-cleanse.XXXXXX)}
# `simpul demo reports` draws about 865 new people per 1,000 rows.
bench_people=$((rows * 87 / 100 + 2000))

command -v /usr/bin/time >/dev/null || die "GNU time is missing: apt-get install time"
bench_build
bench_federation "$work" "$digit"
local_port=${digit}641

say "simpul up (four gateways, one process), registry of $bench_people people"
(cd "$work" && RUST_LOG=warn exec "$simpul" up >up.log 2>&1) &
up_pid=$!
trap 'kill $up_pid 2>/dev/null || true' EXIT
wait_port "$local_port" 1200 "$up_pid" || die "simpul up did not start (see $work/up.log)"

say "simpul demo reports --rows $rows"
(cd "$work" && "$simpul" demo reports --rows "$rows" --out reports.csv >reports.log 2>&1)
cat "$work/reports.log" | tail -1 >&2

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
before=$(ticks "$up_pid")
say "simpul cleanse"
start=$(date +%s.%N)
(cd "$work" && /usr/bin/time -v -o cleanse.time "$simpul" cleanse --as ID:GOV:KEMLU:PEDULI-WNI \
  reports.csv --out cleansed.csv --age-at 17 --on 2024-02-14 >cleanse.out 2>cleanse.err)
end=$(date +%s.%N)
after=$(ticks "$up_pid")
gateways_rss=$(awk '/^VmHWM/ { print $2 }' "/proc/$up_pid/status")
command_rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$work/cleanse.time")
command_cpu=$(awk -F': ' '/User time/ { u = $2 } /System time/ { s = $2 } END { print u + s }' "$work/cleanse.time")
seconds=$(echo "$end - $start" | bc -l)
sent=$(awk '/^sent to the registry/ { print $NF }' "$work/cleanse.out")
batches=$(( (sent + 999) / 1000 ))
gateway_cpu=$(echo "($after - $before) / $hz" | bc -l)

printf '\n| rows | kept | wall s | rows/s | batches | batches/s | gateways CPU s per 1,000 rows | command CPU s per 1,000 rows | peak RSS: command | peak RSS: the four gateways |\n'
printf '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n'
printf '| %s | %s | %.1f | %.0f | %s | %.1f | %.3f | %.3f | %s MB | %s MB |\n' \
  "$rows" "$(awk '/^rows out/ { print $NF }' "$work/cleanse.out")" "$seconds" \
  "$(echo "$rows / $seconds" | bc -l)" "$batches" "$(echo "$batches / $seconds" | bc -l)" \
  "$(echo "$gateway_cpu * 1000 / $rows" | bc -l)" "$(echo "$command_cpu * 1000 / $rows" | bc -l)" \
  "$((command_rss / 1024))" "$((gateways_rss / 1024))"
printf '\n(%s; work directory %s)\n' "$(nproc) cores, $(date -u +%Y-%m-%d)" "$work"
cat "$work/cleanse.out"
