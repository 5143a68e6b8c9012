#!/usr/bin/env bash
# One overlap count end to end through two real gateways (issue #16 item 4; docs/BENCHMARKS.md,
# "Overlap counts: contracts::psi"): Kemlu's list of N NIKs against BP2MI's list of N NIKs,
# OVERLAP_PCT % of them on both, counted by `placement.overlap/1` as the demo federation runs
# it — Kemlu's and BP2MI's gateways each their own `simpul serve --member` process (SQLite,
# durable audit on both sides, mTLS between them), PEDULI-WNI asking on Kemlu's local face
# with curl: `POST /v1/query/placement.overlap/1` `{"purpose":"statistics","query":{"list":
# "selfreports"}}`. The run blinds Kemlu's list, sends it after the signed request, BP2MI
# re-blinds it as it arrives while it reads and blinds its own list, answers digests and its
# points, Kemlu re-blinds those and counts, then reports the count in a second exchange.
#
#   bash bench/overlap.sh                         # 1,000,000 x 1,000,000, 30 % on both
#   OVERLAP_N=200000 bash bench/overlap.sh        # fewer
#
# What it reports, as a Markdown table (header and one row) on standard output:
# - the count, checked against the truth (sqlite3 joins the two lists): the script fails if
#   they differ;
# - wall s: the run as curl times it (`time_total`: from the local question to the answer,
#   the report to BP2MI included);
# - CPU s of each gateway process over the run (utime + stime of /proc/PID/stat, all its
#   threads, before and after);
# - busy s of each: the wall time during which that process used more than 10 % of a core,
#   from /proc/PID/stat sampled every 0.25 s (the sides mostly work in turn: Kemlu blinds,
#   BP2MI re-blinds and blinds, Kemlu re-blinds and counts);
# - peak RSS of each: VmHWM of /proc/PID/status after the run (the process's peak over its
#   life, start-up included; its resident set before the run is printed below the table);
# - bytes each way of the run's bodies, computed from the signed envelopes' announced lists
#   (in the answer's evidence), which the receiving gateway holds the lists to exactly:
#   Kemlu -> BP2MI is the request JWS + LF + its groups' size x 32 + frames x 62 (frame
#   headers); BP2MI -> Kemlu the answer JWS + LF + size x 12 per digest list + BP2MI's size
#   x 32 + frames x 62. TLS records, HTTP heads and the report exchange add a few kB. (A
#   count from `ss` of the connections' bytes was tried and dropped: the run's connection
#   may close before it is read.) The gateways have no byte counters.
#
# The sides are not pinned to separate cores: they work mostly in turn and each spreads its
# blinding over every core, as each side of the in-process example does. OVERLAP_CPUS pins
# both gateway processes to one CPU list with taskset (e.g. 0,1) if wanted.
#
# The demo federation is prepared as bench/lib.sh does for the other benches (`simpul up`
# once in the work directory: PKI, manifest, the demo's data; then stopped). The work
# directory's config.toml is the repository's with its ports moved (74xx… -> D4xx…; lib.sh
# also raises the lookup contracts' rates, which this run does not use), and with BP2MI's
# `placement.overlap` binding and Kemlu's `selfreports` list reading two SQLite files this
# script writes (`data/overlap-bp2mi.db`, `data/overlap-kemlu.db`: one table `ids` of N
# distinct 16-digit NIK-shaped strings each — region, date of birth with women's day plus
# 40, serial), with the demo's `timeout_ms` of 60 s for a list. PEDULI-WNI's grant, the contract
# (min_set 1,000, runs_per_day 10) and its rate are the demo's. Dukcapil's and BPJS TK's
# gateways do not run: the run does not touch them. A run counts against runs_per_day (10
# per consumer and purpose per UTC day, read from BP2MI's audit log): each run of this
# script uses a fresh work directory.
#
# Knobs (environment): OVERLAP_N (1000000, at least the contract's min_set of 1000),
# OVERLAP_PCT (30: the share of each list on both), OVERLAP_CPUS (unset: not pinned),
# OVERLAP_PORT_DIGIT (the demo's ports 7441… become D441…; default the first free of
# 6 5 4 3 2), OVERLAP_DIR (default a new /tmp/simpul-overlap.XXXXXX, kept; if given, it must
# be new or empty), CARGO_TARGET_DIR. Builds release first (cargo build --release -p simpul).
# Needs sqlite3, curl, jq. The work directory takes about 70 MB at 1,000,000.
set -euo pipefail
bench_name=overlap
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

for arg in "$@"; do
  case $arg in
    -h | --help)
      sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *) die "unknown argument $arg (try --help)" ;;
  esac
done

n=${OVERLAP_N:-1000000}
pct=${OVERLAP_PCT:-30}
[[ $n =~ ^[0-9]+$ ]] && ((n >= 1000 && n <= 5000000)) || die "OVERLAP_N=$n: 1000 to 5000000 (the contract's min_set is 1,000)"
[[ $pct =~ ^[0-9]+$ ]] && ((pct <= 100)) || die "OVERLAP_PCT=$pct: 0 to 100"
shared=$((n * pct / 100))
cpus=${OVERLAP_CPUS:-}
consumer=ID:GOV:KEMLU
overlap_provider=ID:GOV:BP2MI
contract=placement.overlap
command_line="bash bench/overlap.sh"
for knob in OVERLAP_CPUS OVERLAP_PCT OVERLAP_N; do
  [ -z "${!knob+set}" ] || command_line="$knob=${!knob} $command_line"
done

for tool in sqlite3:sqlite3 curl:curl jq:jq getconf:libc-bin awk:mawk cargo:cargo; do
  command -v "${tool%%:*}" >/dev/null || die "needs ${tool%%:*}: apt-get install ${tool#*:}"
done
[ -z "$cpus" ] || command -v taskset >/dev/null || die "OVERLAP_CPUS needs taskset: apt-get install util-linux"

say "building release (cargo build --release -p simpul)"
(cd "$bench_repo" && cargo build --release -p simpul)

thousands() { # NUMBER: rounded, with a comma between thousands
  awk -v n="$1" 'BEGIN { s = sprintf("%d", n + 0.5); r = ""
    while (length(s) > 3) { r = "," substr(s, length(s) - 2) r; s = substr(s, 1, length(s) - 3) }
    print s r }'
}

# --- a work directory and free ports --------------------------------------------------------
digit=$(port_digit OVERLAP_PORT_DIGIT)
local_port=${digit}641       # Kemlu's local face
provider_port=${digit}443    # BP2MI's federation listener

work=${OVERLAP_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/simpul-overlap.XXXXXX")}
mkdir -p "$work"
work=$(cd "$work" && pwd)
[ -z "$(ls -A "$work")" ] || die "$work is not empty: a run needs a fresh work directory (runs_per_day counts from its audit log)"

consumer_pid=
provider_pid=
sampler_pid=
cleanup() {
  local pid
  for pid in $sampler_pid $consumer_pid $provider_pid; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in $sampler_pid $consumer_pid $provider_pid; do
    wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
started_at=$(date -u '+%Y-%m-%d %H:%M UTC')

# --- the demo federation, and the two lists ---------------------------------------------------
bench_federation "$work" "$digit"
cd "$work"

# make_list FILE FIRST END: the NIKs numbered FIRST to END - 1 into FILE's table `ids`. Number
# i is serial i % 9999 + 1 of the date r = i / 9999 (day, sex, month, year, region in turn),
# so distinct numbers are distinct NIKs.
make_list() {
  sqlite3 "$1" >/dev/null <<SQL
PRAGMA journal_mode = OFF;
PRAGMA synchronous = OFF;
CREATE TABLE ids (nik TEXT NOT NULL);
INSERT INTO ids
  WITH RECURSIVE s(i) AS (SELECT $2 UNION ALL SELECT i + 1 FROM s WHERE i + 1 < $3)
  SELECT printf('%06d%02d%02d%02d%04d', 317101 + r / 67200, r % 28 + 1 + 40 * ((r / 28) % 2),
                (r / 56) % 12 + 1, (r / 672) % 100, serial)
    FROM (SELECT i / 9999 AS r, i % 9999 + 1 AS serial FROM s);
SQL
}
say "lists: $(thousands "$n") NIKs each, $(thousands "$shared") on both ($pct %), into data/overlap-kemlu.db and data/overlap-bp2mi.db"
rm -f data/overlap-kemlu.db data/overlap-bp2mi.db
make_list data/overlap-kemlu.db 0 "$n"
make_list data/overlap-bp2mi.db $((n - shared)) $((2 * n - shared))
truth=$(sqlite3 data/overlap-kemlu.db "ATTACH 'data/overlap-bp2mi.db' AS b;
  SELECT (SELECT COUNT(DISTINCT nik) FROM main.ids) || ' ' || (SELECT COUNT(DISTINCT nik) FROM b.ids)
         || ' ' || (SELECT COUNT(*) FROM main.ids WHERE nik IN (SELECT nik FROM b.ids));")
read -r kemlu_size bp2mi_size truth <<<"$truth"
((kemlu_size == n && bp2mi_size == n)) || die "the lists hold $kemlu_size and $bp2mi_size distinct NIKs, not $n"
say "truth (sqlite3): $(thousands "$truth") NIKs on both lists"

# The two list bindings read the new files: BP2MI's placement.overlap binding (its database
# and one-line statement) and Kemlu's selfreports list (its database, its statement over
# several lines, and its columns: no label, the run is not grouped).
awk '
  skipping { if ($0 ~ /"""$/) skipping = 0; next }
  /^ *\[\[/ { inside = "" }
  /^  contract = "placement\.overlap"$/ { inside = "bp2mi" }
  /^  name = "selfreports"$/ { inside = "kemlu" }
  inside != "" && /^  database = / {
    print "  database = \"data/overlap-" inside ".db\""; edits++
    next
  }
  inside != "" && /^  statement = / {
    print "  statement = \"SELECT nik AS identifier FROM ids\""; edits++
    if ($0 ~ /"""$/) skipping = 1
    next
  }
  inside == "kemlu" && /^  columns = / { print "  columns = { identifier = \"text\" }"; edits++; next }
  { print }
  END { if (edits != 5) exit 1 }' config.toml >config.toml.new ||
  die "config.toml: not the placement.overlap binding and selfreports list expected (database, statement, columns)"
mv config.toml.new config.toml
grep -c 'FROM ids"$' config.toml | grep -qx 2 || die "config.toml: the two list statements were not replaced"

# --- the two gateways --------------------------------------------------------------------------
serve() { # MEMBER: that member's gateway alone, in the background; its pid in served_pid
  local pin=()
  [ -z "$cpus" ] || pin=(taskset -c "$cpus")
  (RUST_LOG=${RUST_LOG:-info} exec "${pin[@]}" "$simpul" serve --member "$1" >"serve-${1//:/_}.log" 2>&1) &
  served_pid=$!
}
say "simpul serve: $consumer and $overlap_provider, each its own process${cpus:+, both on CPUs $cpus}"
serve "$consumer" && consumer_pid=$served_pid
serve "$overlap_provider" && provider_pid=$served_pid
wait_port "$local_port" 120 "$consumer_pid" || die "$consumer did not start (see $work/serve-ID_GOV_KEMLU.log)"
wait_port "$provider_port" 120 "$provider_pid" || die "$overlap_provider did not start (see $work/serve-ID_GOV_BP2MI.log)"
wait_port "${digit}441" 60 "$consumer_pid" || die "$consumer's federation listener did not start"

# --- measuring --------------------------------------------------------------------------------
hz=$(getconf CLK_TCK)
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
status_kib() { awk -v key="$2:" '$1 == key { print $2 }' "/proc/$1/status"; }
# sample: every 0.25 s, the time and both processes' CPU ticks, until killed.
sample() {
  while :; do
    echo "$(date +%s.%N) $(ticks "$consumer_pid") $(ticks "$provider_pid")"
    sleep 0.25
  done
}

consumer_idle_rss=$(status_kib "$consumer_pid" VmRSS)
provider_idle_rss=$(status_kib "$provider_pid" VmRSS)
consumer_before=$(ticks "$consumer_pid")
provider_before=$(ticks "$provider_pid")
sample >samples.txt &
sampler_pid=$!

certs=$work/certs
caller=$certs/ID_GOV_KEMLU/ID_GOV_KEMLU_PEDULI-WNI
say "the run: POST /v1/query/$contract/1 on $consumer's local face (port $local_port) as PEDULI-WNI"
curl_out=$(curl -sS --max-time 3600 --cacert "$certs/ca.pem" --cert "$caller.pem" --key "$caller.key" \
  -H 'content-type: application/json' -d '{"purpose":"statistics","query":{"list":"selfreports"}}' \
  -o answer.json -w '%{http_code} %{time_total}' "https://localhost:$local_port/v1/query/$contract/1") ||
  die "curl failed ($curl_out; see $work/serve-*.log)"

consumer_after=$(ticks "$consumer_pid")
provider_after=$(ticks "$provider_pid")
kill "$sampler_pid" 2>/dev/null || true
wait "$sampler_pid" 2>/dev/null || true
sampler_pid=
consumer_peak=$(status_kib "$consumer_pid" VmHWM)
provider_peak=$(status_kib "$provider_pid" VmHWM)
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

read -r http_code wall <<<"$curl_out"
[ "$http_code" = 200 ] || die "the run answered $http_code: $(head -c 2000 answer.json) (see $work/serve-*.log)"
count=$(jq -r '.result.overlap' answer.json)
[ "$(jq -r '.result.report.recorded' answer.json)" = true ] ||
  say "the report was not recorded by $overlap_provider: $(jq -c '.result.report' answer.json)"

# What the signed envelopes announce (compact JWS: the payload is the second part).
payload() { jq -r "$1 | split(\".\")[1]" answer.json |
  jq -R 'gsub("-"; "+") | gsub("_"; "/") | . + ("=" * ((4 - length % 4) % 4)) | @base64d | fromjson'; }
payload .evidence.request >request.json
payload .evidence.response >response.json
to_provider=$(jq --argjson jws "$(jq -r '.evidence.request | length' answer.json)" \
  '$jws + 1 + ([.query.run.groups[] | .size * 32 + .frames * 62] | add)' request.json)
to_consumer=$(jq --argjson jws "$(jq -r '.evidence.response | length' answer.json)" \
  '$jws + 1 + ([.result.answers[] | .size * 12 + .frames * 62] | add) + .result.theirs.size * 32 + .result.theirs.frames * 62' response.json)
frames_to=$(jq '[.query.run.groups[].frames] | add' request.json)
frames_back=$(jq '[.result.answers[].frames] | add + 0' response.json)
frames_back=$((frames_back + $(jq '.result.theirs.frames' response.json)))

cpu() { awk -v a="$1" -v b="$2" -v hz="$hz" 'BEGIN { printf "%.1f", (b - a) / hz }'; }
consumer_cpu=$(cpu "$consumer_before" "$consumer_after")
provider_cpu=$(cpu "$provider_before" "$provider_after")
busy() { # COLUMN of samples.txt: wall seconds in intervals where that process used > 10 % of a core
  awk -v c="$1" -v hz="$hz" 'NR > 1 { dt = $1 - t; if (dt > 0 && ($c - v) / hz > 0.1 * dt) s += dt }
    { t = $1; v = $c } END { printf "%.1f", s }' samples.txt
}
consumer_busy=$(busy 2)
provider_busy=$(busy 3)
# The phases: Kemlu busy before BP2MI's first busy interval, and after its last.
phases=$(awk -v hz="$hz" 'NR > 1 { dt = $1 - t; n++; when[n] = dt
      k[n] = ($2 - kv) / hz > 0.1 * dt; b[n] = ($3 - bv) / hz > 0.1 * dt
      if (b[n]) { if (!first) first = n; last = n } }
    { t = $1; kv = $2; bv = $3 }
    END { for (i = 1; i <= n; i++) if (k[i]) { if (first && i < first) pre += when[i]; else if (i > last) post += when[i] }
          printf "%.1f %.1f", pre, post }' samples.txt)
read -r consumer_first consumer_last <<<"$phases"
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.0f MiB", k / 1024 }'; }

commit=$(git -C "$bench_repo" rev-parse --short HEAD)
git -C "$bench_repo" diff --quiet HEAD -- . ":!docs" 2>/dev/null || commit="$commit (with uncommitted changes)"
echo
echo '```sh'
echo "$command_line"
echo '```'
echo
echo "| identifiers | on both (true) | count | wall s | CPU s: Kemlu / BP2MI | busy s: Kemlu / BP2MI | peak RSS: Kemlu / BP2MI | Kemlu -> BP2MI | BP2MI -> Kemlu | both ways |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
printf '| %s x %s | %s (%s %%) | %s | %.1f | %s / %s | %s / %s | %s / %s | %s | %s | %s |\n' \
  "$(thousands "$n")" "$(thousands "$n")" "$(thousands "$truth")" "$pct" "$(thousands "$count")" "$wall" \
  "$consumer_cpu" "$provider_cpu" "$consumer_busy" "$provider_busy" \
  "$(mib "$consumer_peak")" "$(mib "$provider_peak")" \
  "$(mb "$to_provider")" "$(mb "$to_consumer")" "$(mb $((to_provider + to_consumer)))"
echo
echo "Run $started_at at commit $commit on $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), $(uname -sr);"
echo "load average $load_start at the start, $load_end at the end${cpus:+; both gateways on CPUs $cpus}."
echo "Kemlu -> BP2MI: $to_provider bytes in $frames_to frames; BP2MI -> Kemlu: $to_consumer bytes in"
echo "$frames_back frames: each run's body, its signed envelope, LF and lists, 62-byte frame headers"
echo "included, as the envelopes announce them (TLS, HTTP and the report exchange add a few kB)."
echo "Busy s in turn: Kemlu reads and blinds its list $consumer_first, BP2MI re-blinds it and reads and"
echo "blinds its own $provider_busy, Kemlu re-blinds BP2MI's, counts and reports $consumer_last."
echo "Resident before the run: Kemlu $(mib "$consumer_idle_rss"), BP2MI $(mib "$provider_idle_rss")."
echo "Work directory $work (answer.json, samples.txt, serve-*.log)."
((count == truth)) || die "the count $count is not the truth $truth"
