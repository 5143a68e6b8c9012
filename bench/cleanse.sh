#!/usr/bin/env bash
# `simpul cleanse` end to end through the demo federation (issue #15 item 5; docs/BENCHMARKS.md,
# "Cleansing self-reports: bench/cleanse.sh"): a civil registry large enough, ROWS self-reports
# drawn from it (`simpul demo reports`), then the cleanse — Kemlu's gateway, mTLS, both
# signatures per batch, Dukcapil's lookups, durable audit on both sides, each gateway its own
# `simpul serve --member` process on SQLite — timed, with the command's CPU and peak memory
# and each gateway's CPU and peak memory from /proc.
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

consumer=ID:GOV:KEMLU
serve() { # MEMBER: that member's gateway alone, in the background; its pid in served_pid
  (cd "$work" && RUST_LOG=warn exec "$simpul" serve --member "$1" >"serve-${1//:/_}.log" 2>&1) &
  served_pid=$!
}
say "simpul serve: $consumer and $provider, each its own process (registry of $bench_people people)"
serve "$consumer" && consumer_pid=$served_pid
serve "$provider" && provider_pid=$served_pid
trap 'kill $consumer_pid $provider_pid 2>/dev/null || true' EXIT
wait_port "$local_port" 600 "$consumer_pid" || die "$consumer did not start (see $work/serve-*.log)"
wait_port "$gateway_port" 600 "$provider_pid" || die "$provider did not start (see $work/serve-*.log)"

say "simpul demo reports --rows $rows"
(cd "$work" && "$simpul" demo reports --rows "$rows" --out reports.csv >reports.log 2>&1)
cat "$work/reports.log" | tail -1 >&2

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
consumer_before=$(ticks "$consumer_pid")
provider_before=$(ticks "$provider_pid")
say "simpul cleanse"
start=$(date +%s.%N)
(cd "$work" && /usr/bin/time -v -o cleanse.time "$simpul" cleanse --as ID:GOV:KEMLU:PEDULI-WNI \
  reports.csv --out cleansed.csv --age-at 17 --on 2024-02-14 >cleanse.out 2>cleanse.err)
end=$(date +%s.%N)
consumer_cpu=$(echo "($(ticks "$consumer_pid") - $consumer_before) / $hz" | bc -l)
provider_cpu=$(echo "($(ticks "$provider_pid") - $provider_before) / $hz" | bc -l)
peak_rss() { echo $(($(awk '/^VmHWM/ { print $2 }' "/proc/$1/status") / 1024)); }
command_rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$work/cleanse.time")
command_cpu=$(awk -F': ' '/User time/ { u = $2 } /System time/ { s = $2 } END { print u + s }' "$work/cleanse.time")
seconds=$(echo "$end - $start" | bc -l)
sent=$(awk '/^sent to the registry/ { print $NF }' "$work/cleanse.out")
batches=$(( (sent + 999) / 1000 ))

per1000() { echo "$1 * 1000 / $rows" | bc -l; }
printf '\n| rows | kept | wall s | rows/s | batches | batches/s |\n| ---: | ---: | ---: | ---: | ---: | ---: |\n'
printf '| %s | %s | %.1f | %.0f | %s | %.1f |\n' \
  "$rows" "$(awk '/^rows out/ { print $NF }' "$work/cleanse.out")" "$seconds" \
  "$(echo "$rows / $seconds" | bc -l)" "$batches" "$(echo "$batches / $seconds" | bc -l)"
printf '\n| process | CPU s | CPU s per 1,000 rows | peak RSS |\n| --- | ---: | ---: | ---: |\n'
printf '| `simpul cleanse` | %.1f | %.3f | %s MB |\n' "$command_cpu" "$(per1000 "$command_cpu")" "$((command_rss / 1024))"
printf '| %s gateway (consumer) | %.1f | %.3f | %s MB |\n' "$consumer" "$consumer_cpu" "$(per1000 "$consumer_cpu")" "$(peak_rss "$consumer_pid")"
printf '| %s gateway (provider) | %.1f | %.3f | %s MB |\n' "$provider" "$provider_cpu" "$(per1000 "$provider_cpu")" "$(peak_rss "$provider_pid")"
printf '\n(%s; work directory %s)\n' "$(nproc) cores, $(date -u +%Y-%m-%d)" "$work"
cat "$work/cleanse.out"
