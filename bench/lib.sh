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
