# Shared by the benchmark scripts (bench/*.sh): a demo federation on its own ports in a
# work directory, with the provider's rate and replay bounds raised so that they do not cap
# the load, and the helpers to start and wait for it. Source it after setting `bench_name`.

bench_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bench_target=${CARGO_TARGET_DIR:-target}
case $bench_target in /*) ;; *) bench_target=$bench_repo/$bench_target ;; esac
simpul=$bench_target/release/simpul
generator=$bench_target/release/simpul-conformance
provider=ID:GOV:DUKCAPIL

say() { printf '%s %s: %s\n' "$(date -u +%H:%M:%S)" "${bench_name:-bench}" "$*" >&2; }
die() { say "$*"; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { # PORT SECONDS PID: until PORT accepts, while PID lives
  local i
  for ((i = 0; i < $2 * 5; i++)); do
    port_open "$1" && return 0
    kill -0 "$3" 2>/dev/null || return 1
    sleep 0.2
  done
  return 1
}

# port_digit KNOB [PORT…]: the digit D that moves the demo's ports to D441…D644 (and the
# script's own ports to DPORT…): the environment variable KNOB if set, else the first of
# 6 5 4 3 2 whose ports are all free.
port_digit() {
  local knob=$1 d p busy
  shift
  if [ -n "${!knob:-}" ]; then
    echo "${!knob}"
    return
  fi
  for d in 6 5 4 3 2; do
    busy=0
    for p in 441 442 443 444 541 542 543 544 641 642 643 644 "$@"; do
      port_open "$d$p" && busy=1 && break
    done
    ((busy)) || { echo "$d" && return; }
  done
  die "no free port range (D441–D644 for D in 6 5 4 3 2): set $knob"
}

# stop_server: stops the process $server_pid, if any, and waits for it.
stop_server() {
  if [ -n "${server_pid:-}" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
  fi
}

bench_build() {
  say "building release (cargo build --release -p simpul -p simpul-conformance)"
  (cd "$bench_repo" && cargo build --release -p simpul -p simpul-conformance)
}

# bench_federation WORK PORT_DIGIT: the repository's config.toml in WORK with the ports
# moved (74xx, 75xx, 76xx → PORT_DIGIT 4xx…), Dukcapil's citizenship rate (its only 500/s
# rate) and replay window raised, the other providers' rates (the 200/s ones: the federated
# lookup's parts and placement.record) too, and with `bench_people` set, that many synthetic people
# instead of the demo's 100,000; load.toml for the generator; then `simpul up` once, to
# make the PKI, manifest and data, and stopped. Sets gateway_port and admin_port.
bench_federation() {
  local work=$1 digit=$2 p l
  gateway_port=${digit}442
  admin_port=${digit}542
  for p in 1 2 3 4; do
    for l in 4 5 6; do
      port_open "${digit}${l}4${p}" && die "port ${digit}${l}4${p} is in use (choose another port digit)"
    done
  done
  mkdir -p "$work/contracts"
  cp -r "$bench_repo/contracts/catalog" "$work/contracts/"
  sed "s/127\.0\.0\.1:7\([4-6]4[1-4]\)/127.0.0.1:${digit}\1/g; \
       s/rate = { per_second = 500, burst = 1000 }/rate = { per_second = 1000000, burst = 1000000 }/; \
       s/^  rate = { per_second = 200, burst = 400 }\$/  rate = { per_second = 1000000, burst = 1000000 }/; \
       s/^people = 100000\$/people = ${bench_people:-100000}/" \
    "$bench_repo/config.toml" |
    awk -v id="id = \"$provider\"" '
      $0 == id { mine = 1 }
      mine && /^limits = \{ max_connections = 256, max_connections_per_address = 64 \}$/ {
        sub(/ \}$/, ", replay_capacity = 5000000 }"); mine = 0 }
      { print }' >"$work/config.toml"
  (($(grep -c 'per_second = 1000000' "$work/config.toml") == 5)) ||
    die "config.toml: not the five provider rate lines expected (Dukcapil's 500/s, four 200/s)"
  grep -q 'replay_capacity = 5000000' "$work/config.toml" || die "config.toml: Dukcapil's limits line not found"
  grep -q "^people = ${bench_people:-100000}\$" "$work/config.toml" || die "config.toml: the [data] people line not found"
  sed 's|^base_dir = .*|base_dir = "."|; s|https://localhost:7442|https://localhost:'"$gateway_port"'|' \
    "$bench_repo/conformance/demo.toml" >"$work/load.toml"

  say "in $work: simpul up once, to make the PKI, manifest and data"
  (cd "$work" && RUST_LOG=warn exec "$simpul" up >up.log 2>&1) &
  local up_pid=$!
  if ! wait_port "$gateway_port" 1200 "$up_pid"; then
    kill "$up_pid" 2>/dev/null || true
    die "simpul up did not start (see $work/up.log)"
  fi
  kill "$up_pid"
  wait "$up_pid" || say "simpul up exited with $? on SIGTERM (see $work/up.log)"
}

# bench_metrics WORK: the provider's admin metrics, as its operator.
bench_metrics() {
  local operator=$1/certs/${provider//:/_}/operator-OPS
  curl -sf --max-time 10 --cacert "$1/certs/ca.pem" --cert "$operator.pem" --key "$operator.key" \
    "https://localhost:$admin_port/metrics"
}

# --- measuring a target (bench/run.sh, bench/grown.sh) ------------------------------------
# Globals they read: generator_cpu, connections, paced_connections, seconds, server_pid,
# ceiling (exchanges/s of the crypto ceiling), and the arrays full_args and half_args (the
# generator's extra options for each run); measure appends to the array `rows`.

json_number() { # FILE KEY: the first number under KEY in FILE
  sed -n "s/^.*\"$2\": \([0-9.e+-]*\).*$/\1/p" "$1" | head -n 1
}
thousands() { # NUMBER: rounded, with a comma between thousands
  awk -v n="$1" 'BEGIN { s = sprintf("%d", n + 0.5); r = ""
    while (length(s) > 3) { r = "," substr(s, length(s) - 2) r; s = substr(s, 1, length(s) - 3) }
    print s r }'
}

# half_rate FULL: half the exchanges/s of the full-load report FULL, whole.
half_rate() {
  awk -v r="$(json_number "$1" exchanges_per_s)" 'BEGIN { printf "%d", r / 2 }'
}

# paced OUT RATE [ARG…]: the open loop at RATE over $paced_connections connections for
# $seconds s against $server_pid, the generator's extra ARGs after; the report is OUT.
paced() {
  local out=$1 rate=$2
  shift 2
  taskset -c "$generator_cpu" "$generator" load --config load.toml --connections "$paced_connections" \
    --duration "${seconds}s" --rate "$rate" --server-pid "$server_pid" --json "$@" >"$out"
}

# measure NAME LABEL: full load, then half of it, against $server_pid; the reports are
# NAME-full.json and NAME-half.json in the current directory. Appends a row to `rows`.
measure() {
  local name=$1 label=$2 full half rate
  full=$name-full.json
  half=$name-half.json
  say "$label: full load, closed loop, $connections connections, $seconds s"
  taskset -c "$generator_cpu" "$generator" load --config load.toml --connections "$connections" \
    --duration "${seconds}s" --server-pid "$server_pid" --json "${full_args[@]}" >"$full" ||
    die "$label: the full-load run failed (see above)"
  rate=$(half_rate "$full")
  ((rate > 0)) || die "$label: no exchanges at full load (see $PWD/$full)"
  say "$label: half load, $rate exchanges/s open loop, $paced_connections connections, $seconds s"
  paced "$half" "$rate" "${half_args[@]}" || die "$label: the half-load run failed (see above)"
  rows+=("$(row "$label" "$full" "$half")")
}

# The table's header for the rows of `row`.
table_header() {
  echo "| target | connections | exchanges/s | of the crypto ceiling | core busy: server / generator | half load: rate | p50 | p99 | max | CPU µs per exchange (full / half load) | peak RSS | not answered | note |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
}

# row LABEL FULL HALF: one line of the Markdown table from the two reports.
row() {
  local f=$2 h=$3
  awk -v label="$1" -v conns="$connections" -v ceiling="$ceiling" \
    -v rate="$(json_number "$f" exchanges_per_s)" \
    -v cpu="$(json_number "$f" cpu_us_per_exchange)" \
    -v generator_busy="$(awk -v c="$(json_number "$f" generator_cpu_s)" -v t="$(json_number "$f" elapsed_s)" 'BEGIN { print 100 * c / t }')" \
    -v half_rate="$(json_number "$h" rate_per_s)" \
    -v p50="$(json_number "$h" p50_us)" -v p99="$(json_number "$h" p99_us)" \
    -v max="$(json_number "$h" max_us)" -v half_cpu="$(json_number "$h" cpu_us_per_exchange)" \
    -v rss="$(json_number "$h" peak_rss_kib)" \
    -v missed="$(($(json_number "$f" exchanges) - $(json_number "$f" ok) + $(json_number "$f" errors) + \
      $(json_number "$h" exchanges) - $(json_number "$h" ok) + $(json_number "$h" errors) + \
      $(json_number "$h" unsent)))" \
    -v behind="$(awk -v s="$(json_number "$h" sent)" -v l="$(json_number "$h" late)" -v u="$(json_number "$h" unsent)" \
      'BEGIN { print (u > 0 || l * 100 > s) ? "yes" : "no" }')" '
    function ms(us) { return sprintf(us >= 100000 ? "%.0f ms" : (us >= 10000 ? "%.1f ms" : "%.2f ms"), us / 1000) }
    function thousands(n,   s, r) {
      s = sprintf("%d", n + 0.5); r = ""
      while (length(s) > 3) { r = "," substr(s, length(s) - 2) r; s = substr(s, 1, length(s) - 3) }
      return s r
    }
    BEGIN {
      busy = rate * cpu / 1e4
      note = ""
      if (generator_busy >= 90) note = "full load: the generator core was the limit"
      else if (busy < 90) note = "full load: neither process saturated its core"
      if (behind == "yes") note = note (note == "" ? "" : "; ") "half load: over 1 % sent late (a connection still waiting, or the generator short of CPU)"
      printf "| %s | %s | %s | %.0f %% | %.0f %% / %.0f %% | %s | %s | %s | %s | %s / %s | %.1f MiB | %s | %s |\n",
        label, conns, thousands(rate), 100 * rate / ceiling, busy, generator_busy, thousands(half_rate),
        ms(p50), ms(p99), ms(max), thousands(cpu), thousands(half_cpu), rss / 1024, missed, note
    }'
}

# bench_commit: the short commit of the repository, saying so when files other than
# docs/BENCHMARKS.md differ from it.
bench_commit() {
  local commit
  commit=$(git -C "$bench_repo" rev-parse --short HEAD)
  git -C "$bench_repo" diff --quiet HEAD -- . ":!docs/BENCHMARKS.md" 2>/dev/null || commit="$commit (with uncommitted changes)"
  echo "$commit"
}

# write_section DOC HEADING SECTION: replaces the section under HEADING (a "## " line, to the
# next "## " line) of DOC with the file SECTION, or appends it when DOC has none.
write_section() {
  local doc=$1 heading=$2 section=$3
  [ -f "$doc" ] || die "$doc: no such file (set RUN_DOC= to skip writing it)"
  awk -v heading="$heading" -v section="$section" '
    function insert(   line) { while ((getline line < section) > 0) print line; close(section); done = 1 }
    $0 == heading { insert(); skipping = 1; next }
    skipping && /^## / { skipping = 0; print "" }
    skipping { next }
    { print }
    END { if (!done) { print ""; insert() } }' "$doc" >"$doc.new"
  mv "$doc.new" "$doc"
  say "wrote the table into $doc"
}
