#!/usr/bin/env bash
# Issue #13's "throughput with a 10 GB audit log within 10 % of that with an empty one",
# measured on the gateway itself (docs/BENCHMARKS.md, "A grown audit log: bench/grown.sh"):
# Dukcapil of the demo federation (`simpul serve`, durable audit on disk, cache hits) pinned
# to one core, the load generator on the other, measured as bench/run.sh measures its
# provider rows (full load in a closed loop, then half of that rate paced) with a new, empty
# audit store. Then the same gateway, unpinned, answers the generator as fast as it can until
# its audit store (the SQLite file, its WAL and its journal's directory) holds GROWN_MB; then,
# restarted and pinned again, it is measured a second time. The table goes to standard output
# and replaces that section of docs/BENCHMARKS.md.
#
#   bash bench/grown.sh                  # 10 GB: about 11 minutes of growing here
#   GROWN_MB=1024 bash bench/grown.sh    # 1 GB
#
# Knobs (environment): GROWN_MB (10240), GROWN_CONNECTIONS (64: the generator's connections
# while growing), RUN_SECONDS (10 per measurement), RUN_CONNECTIONS (8), RUN_PACED_CONNECTIONS
# (32), RUN_SERVER_CPU (0), RUN_GENERATOR_CPU (1), RUN_PORT_DIGIT (the demo's ports 7441…
# become D441…; default the first free of 6 5 4 3 2), RUN_DIR (default a new
# /tmp/simpul-grown.XXXXXX, kept: it takes GROWN_MB and about 100 MB more), RUN_DOC
# (docs/BENCHMARKS.md; empty: do not write it), CARGO_TARGET_DIR.
set -euo pipefail
bench_name=grown
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case ${1:-} in
  "") ;;
  -h | --help)
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
  *) die "unknown argument $1 (try --help)" ;;
esac
grown_mb=${GROWN_MB:-10240}
grow_connections=${GROWN_CONNECTIONS:-64}
seconds=${RUN_SECONDS:-10}
connections=${RUN_CONNECTIONS:-8}
paced_connections=${RUN_PACED_CONNECTIONS:-32}
server_cpu=${RUN_SERVER_CPU:-0}
generator_cpu=${RUN_GENERATOR_CPU:-1}
doc=${RUN_DOC-$bench_repo/docs/BENCHMARKS.md}
[[ $grown_mb =~ ^[1-9][0-9]*$ ]] || die "GROWN_MB=$grown_mb: a whole number of megabytes, e.g. 10240"
PATH=$PATH:/usr/sbin:/sbin
for tool in taskset sqlite3 du df awk sed git cargo; do
  command -v "$tool" >/dev/null || die "needs $tool"
done

bench_build
say "building the crypto ceiling (cargo build --release -p simpul-gateway --example crypto_ceiling)"
(cd "$bench_repo" && cargo build --release -p simpul-gateway --example crypto_ceiling)
crypto_ceiling=$bench_target/release/examples/crypto_ceiling

digit=$(port_digit RUN_PORT_DIGIT)
work=${RUN_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/simpul-grown.XXXXXX")}
mkdir -p "$work"
work=$(cd "$work" && pwd)
free_mb=$(df -Pm "$work" | awk 'NR == 2 { print $4 }')
((free_mb > grown_mb + 2048)) ||
  die "$work: $free_mb MB free, and growing the audit store takes $grown_mb MB and 2 GB to spare (set RUN_DIR or GROWN_MB)"

server_pid=
generator_pid=
cleanup() {
  [ -z "$generator_pid" ] || kill "$generator_pid" 2>/dev/null || true
  stop_server
}
trap cleanup EXIT

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
started_at=$(date -u '+%Y-%m-%d %H:%M UTC')

say "crypto ceiling: ES256 verify + sign through contracts::jws on CPU $server_cpu for $seconds s"
taskset -c "$server_cpu" "$crypto_ceiling" "$seconds" ES256 >"$work/ceiling.json"
ceiling=$(json_number "$work/ceiling.json" exchanges_per_s)
[ -n "$ceiling" ] || die "no exchanges_per_s in $work/ceiling.json"

bench_federation "$work" "$digit"
cd "$work"
store=data/audit-${provider//:/_}.db
store_mb() { # the audit store's size on disk: the file, its WAL and shared memory, its journal
  du -scm "$store" "$store"-* "$store".* 2>/dev/null | awk 'END { print $1 }'
}

# serve CPUS: Dukcapil alone, pinned to CPUS.
serve() {
  RUST_LOG=warn taskset -c "$1" "$simpul" serve --member "$provider" >>serve.log 2>&1 &
  server_pid=$!
  wait_port "$gateway_port" 600 "$server_pid" || die "simpul serve did not start (see $work/serve.log)"
}

# indexed: waits until the gateway's tables hold every record of its journal (one that starts
# indexes what its journal holds beyond them first), so that each row measures the exchanges
# alone; at most 300 s.
indexed() {
  local i behind=
  for ((i = 0; i < 300; i++)); do
    behind=$(bench_metrics "$work" | awk '/^simpul_audit_tables_behind/ { print $NF; exit }')
    [ "$behind" = 0 ] && return 0
    sleep 1
  done
  die "the audit store's tables did not catch up with its journal within 300 s (${behind:-?} records behind)"
}

rows=()
full_args=()
half_args=()
say "serving $provider on CPU $server_cpu with an empty audit store ($(store_mb) MB)"
serve "$server_cpu"
indexed
empty_mb=$(store_mb)
measure empty "Simpul provider, cache hit, audit store of $(thousands "$empty_mb") MB"
stop_server

all_cpus=$(awk 'NR == 1 { print "0-" $0 - 1 }' <<<"$(nproc)")
grow_s=0
# grow: the gateway on every core answers the generator until the store holds goal_mb, then
# stops.
grow() {
  local started=$SECONDS mb polls=0
  say "growing the audit store from $(thousands "$(store_mb)") to $(thousands "$goal_mb") MB: $provider on CPUs $all_cpus, $grow_connections connections"
  serve "$all_cpus"
  # Open loop at a rate no gateway here reaches: the envelopes are signed as they are sent
  # (a closed loop signs them all first, and a gateway takes them for 60 s only).
  "$generator" load --config load.toml --connections "$grow_connections" --duration 86400s \
    --rate 100000 --json >grow.json 2>>grow.log &
  generator_pid=$!
  while :; do
    sleep 10
    mb=$(store_mb)
    kill -0 "$generator_pid" 2>/dev/null || die "the generator stopped while growing, at $mb MB (see $work/grow.log)"
    kill -0 "$server_pid" 2>/dev/null || die "the gateway stopped while growing, at $mb MB (see $work/serve.log)"
    ((mb >= goal_mb)) && break
    ((++polls % 6)) || say "$(thousands "$mb") MB after $((SECONDS - started)) s"
  done
  # SIGTERM: a background job of a script ignores SIGINT.
  kill "$generator_pid" 2>/dev/null || true
  wait "$generator_pid" 2>/dev/null || true
  generator_pid=
  stop_server
  grow_s=$((grow_s + SECONDS - started))
}
# A gateway that starts folds its store's WAL into the file and lets go of journal space it
# had filled ahead, so the store it is measured with is smaller than the one it grew: grown
# a tenth further, and again if that was not enough.
goal_mb=$((grown_mb + grown_mb / 10))
for attempt in 1 2 3; do
  grow
  # The tables' count: the journal may hold up to 10,000 records more, indexed after the restart.
  records=$(sqlite3 "$store" 'SELECT max(tree_size) FROM simpul_audit_state' 2>/dev/null || echo 0)
  serve "$server_cpu"
  indexed
  grown_now=$(store_mb)
  say "grown in $grow_s s to $(thousands "$grown_now") MB on the measured gateway's start (its tables held $(thousands "$records") records)"
  ((grown_now >= grown_mb || attempt == 3)) && break
  stop_server
  goal_mb=$((goal_mb + grown_mb - grown_now + grown_mb / 20))
done
measure grown "Simpul provider, cache hit, audit store of $(thousands "$grown_now") MB"
stop_server

load_end=$(cut -d' ' -f1-3 /proc/loadavg)
empty_rate=$(json_number empty-full.json exchanges_per_s)
grown_rate=$(json_number grown-full.json exchanges_per_s)
change=$(awk -v a="$grown_rate" -v b="$empty_rate" 'BEGIN { printf "%+.1f", 100 * (a - b) / b }')
met=$(awk -v a="$grown_rate" -v b="$empty_rate" 'BEGIN { print (a >= 0.9 * b) ? "met" : "**not met**" }')
section=$work/section.md
{
  echo "## A grown audit log: bench/grown.sh"
  echo
  echo '```sh'
  echo "${GROWN_MB:+GROWN_MB=$GROWN_MB }bash bench/grown.sh"
  echo '```'
  echo
  echo "Written by the script, which replaces this section on each run; the figures are that run's."
  echo "Run $started_at at commit $(bench_commit) on $(nproc) CPUs, $(uname -sr); load average"
  echo "$load_start at the start and $load_end at the end. The provider (\`simpul serve --member"
  echo "$provider\` of the demo federation, \`bench/lib.sh\`, cache hits, durable audit on disk) pinned to"
  echo "CPU $server_cpu, the load generator to CPU $generator_cpu, $seconds s per measurement, columns as in"
  echo "the side-by-side table above (crypto ceiling of this run: $(thousands "$ceiling") exchanges/s)."
  echo "Between the two rows the same gateway, on both cores, answered $grow_connections connections as"
  echo "fast as it could for $grow_s s, until its audit store (the SQLite file, its WAL and its journal's"
  echo "directory, whose segments keep the evidence) held $(thousands "$grown_now") MB when the gateway"
  echo "measured with it had started (its tables then held $(thousands "$records") records)."
  echo
  table_header
  printf '%s\n' "${rows[@]}"
  echo
  echo "Issue #13's target, throughput with a 10 GB audit log within 10 % of that with an empty"
  echo "one: $met ($change % at full load$( ((grown_now >= 10240)) || echo ", at $(thousands "$grown_now") MB: not the target's size"))."
} >"$section"

echo
cat "$section"
[ -z "$doc" ] || write_section "$doc" "## A grown audit log: bench/grown.sh" "$section"
say "reports and logs in $work"
