#!/usr/bin/env bash
# Side by side in one run (issue #13 item 1; docs/BENCHMARKS.md, "Side by side: bench/run.sh"):
# the crypto ceiling of one core, a bare hyper + rustls mTLS server with the gateway's TLS
# settings, Debian's nginx as an mTLS reverse proxy with limit_req and proxy_cache, and
# Simpul's provider face (Dukcapil of the demo federation, durable audit on disk) with cache
# hits and with cache misses over many distinct residents, full mTLS handshakes, end to end
# through Kemlu's local face to Dukcapil (`simpul up`), and the federated lookup beside each
# of its four parts; and, as references for what of the provider's latency is its disk's, the
# disk's own write + fdatasync latency and the provider with its data directory on tmpfs
# (not durable), and for what is the machine's, the bare server paced at the provider's
# half-load rate. Every server runs pinned to one core (taskset -c RUN_SERVER_CPU), the
# load generator (`simpul-conformance load`, the same client for every target: `--plain` for
# those that are not a gateway's federation face) on the other.
#
# For each target: exchanges/s at full load (closed loop, RUN_CONNECTIONS connections), then
# open loop at half that rate (`--rate`, RUN_PACED_CONNECTIONS connections, latency from when
# each exchange was due): p50/p99/max; the server process's CPU per exchange and peak RSS
# (`--server-pid`, from /proc). The table goes to standard output and replaces the section
# "## Side by side: bench/run.sh" of docs/BENCHMARKS.md (the rest of the file is left alone).
#
#   bash bench/run.sh            # 10 s per measurement; builds release first
#   bash bench/run.sh --quick    # 3 s per measurement, 100,000 residents
#
# From a clean clone on Debian: as root it installs what is missing (nginx, util-linux's
# taskset, sqlite3, curl, iproute2) with apt-get; as another user it names the package and
# stops. The work directory takes about 1 GB with 1,000,000 residents.
#
# Knobs (environment): RUN_SECONDS (10; --quick 3), RUN_CONNECTIONS (8), RUN_PACED_CONNECTIONS
# (32), RUN_OPEN_CONNECTIONS (1000) and RUN_OPEN_RATE (200/s: the memory run), RUN_DELAY_US
# (1000: the delay each way in front of each provider for the delayed federated lookup), RUN_PEOPLE (synthetic people of the demo, so residents of Dukcapil: 1,000,000; --quick
# 100,000), RUN_SERVER_CPU (0), RUN_GENERATOR_CPU (1), RUN_PORT_DIGIT (the demo's ports
# 7441… become D441…; default the first free of 6 5 4 3 2), RUN_DIR (default a new
# /tmp/simpul-run.XXXXXX, kept), RUN_DOC (docs/BENCHMARKS.md; empty: do not write it),
# CARGO_TARGET_DIR.
#
# The rows "a full handshake per exchange" (`--handshake-each`: a new connection for every
# exchange, no session resumption on either side) give full mTLS handshakes/s.
#
# Memory: the provider's resident set idle, and its peak while RUN_OPEN_CONNECTIONS keep-alive
# connections are open (the generator paced at RUN_OPEN_RATE over all of them).
#
# The federated lookup is measured twice: on loopback, and with every provider's gateway
# behind added network delay (RUN_DELAY_US each way, default 1000: 2 ms more per round trip).
# The delay comes from `gateway/examples/delay_proxy.rs`, a TCP proxy on the generator's core
# in front of each gateway's federation listener (the manifest's gateway URLs point at it),
# not from `tc netem` in a network namespace: the script probes for netem and says whether
# this kernel has it (this project's machine, Linux 6.18 without CONFIG_NET_SCH_NETEM, has
# not). The audit store's targets (appends at 64 writers) are cargo benches of audit-store,
# and the provider with a 10 GB audit log is bench/grown.sh (docs/BENCHMARKS.md): not rows
# of this table.
set -euo pipefail
bench_name=run
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

quick=0
for arg in "$@"; do
  case $arg in
    --quick) quick=1 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *) die "unknown argument $arg (try --help)" ;;
  esac
done
if ((quick)); then
  seconds=${RUN_SECONDS:-3}
  people=${RUN_PEOPLE:-100000}
else
  seconds=${RUN_SECONDS:-10}
  people=${RUN_PEOPLE:-1000000}
fi
connections=${RUN_CONNECTIONS:-8}
paced_connections=${RUN_PACED_CONNECTIONS:-32}
open_connections=${RUN_OPEN_CONNECTIONS:-1000}
open_rate=${RUN_OPEN_RATE:-200}
delay_us=${RUN_DELAY_US:-1000}
server_cpu=${RUN_SERVER_CPU:-0}
generator_cpu=${RUN_GENERATOR_CPU:-1}
doc=${RUN_DOC-$bench_repo/docs/BENCHMARKS.md}
command_line="bash bench/run.sh${*:+ $*}"

# --- what it needs ---------------------------------------------------------------------
need() { # COMMAND PACKAGE: install PACKAGE from Debian's archive when COMMAND is missing
  command -v "$1" >/dev/null && return 0
  [ "$(id -u)" = 0 ] || die "needs $1: apt-get install $2 (as root), then run again"
  command -v apt-get >/dev/null || die "needs $1 (Debian package $2) and there is no apt-get"
  say "installing $2 (for $1) with apt-get"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$2" >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get update >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$2" >/dev/null 2>&1 ||
      die "apt-get install $2 failed"
  fi
  command -v "$1" >/dev/null || die "apt-get installed $2 but $1 is still not on PATH"
}
PATH=$PATH:/usr/sbin:/sbin
need taskset util-linux
need nginx nginx
need sqlite3 sqlite3
need curl curl
need getconf libc-bin
if [ "$(id -u)" = 0 ]; then
  need ip iproute2 # only to probe for tc netem (the delay itself comes from delay_proxy)
  need tc iproute2
fi
for tool in awk sed sort split git cargo; do
  command -v "$tool" >/dev/null || die "needs $tool"
done
(($(nproc) >= 2)) || say "only $(nproc) CPU: server and generator share it"

bench_build
say "building the bench's own examples (cargo build --release -p simpul-gateway --example bare_mtls --example crypto_ceiling --example delay_proxy --example disk_sync)"
(cd "$bench_repo" && cargo build --release -p simpul-gateway --example bare_mtls --example crypto_ceiling --example delay_proxy --example disk_sync)
disk_sync=$bench_target/release/examples/disk_sync
delay_proxy=$bench_target/release/examples/delay_proxy
bare_mtls=$bench_target/release/examples/bare_mtls
crypto_ceiling=$bench_target/release/examples/crypto_ceiling

# --- a work directory, free ports, and cleaning up ---------------------------------------
digit=$(port_digit RUN_PORT_DIGIT 451 452 453 461 462 463 464)
bare_port=${digit}451
nginx_port=${digit}452
backend_port=${digit}453
for p in $bare_port $nginx_port $backend_port ${digit}461 ${digit}462 ${digit}463 ${digit}464; do
  port_open "$p" && die "port $p is in use (choose another RUN_PORT_DIGIT)"
done

work=${RUN_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/simpul-run.XXXXXX")}
mkdir -p "$work"
work=$(cd "$work" && pwd)

server_pid=
probe_ns=
generator_pid=
proxy_pid=
shm_data=
cleanup() {
  [ -z "$generator_pid" ] || kill "$generator_pid" 2>/dev/null || true
  [ -z "$proxy_pid" ] || kill "$proxy_pid" 2>/dev/null || true
  stop_server
  [ -z "$probe_ns" ] || ip netns del "$probe_ns" 2>/dev/null || true
  if [ -n "$shm_data" ]; then # stopped during the tmpfs row: the data directory back in place
    rm -f "$work/data"
    [ ! -d "$work/data.disk" ] || mv "$work/data.disk" "$work/data"
    rm -rf "$shm_data"
  fi
}
trap cleanup EXIT

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
started_at=$(date -u '+%Y-%m-%d %H:%M UTC')

# --- 1. the crypto ceiling ---------------------------------------------------------------
say "crypto ceiling: ES256 verify + sign through contracts::jws on CPU $server_cpu for $seconds s"
taskset -c "$server_cpu" "$crypto_ceiling" "$seconds" ES256 >"$work/ceiling.json"
ceiling=$(json_number "$work/ceiling.json" exchanges_per_s)
verify_us=$(json_number "$work/ceiling.json" verify_us)
sign_us=$(json_number "$work/ceiling.json" sign_us)
[ -n "$ceiling" ] || die "no exchanges_per_s in $work/ceiling.json"
say "crypto ceiling: verify $verify_us µs + sign $sign_us µs = $(thousands "$ceiling") exchanges/s on one core"

# --- the disk's floor: one small write + fdatasync, as the journal's group commit makes ------
say "disk sync floor: 2 KiB write + fdatasync back to back in $work on CPU $server_cpu for 5 s"
taskset -c "$server_cpu" "$disk_sync" "$work" 5 >"$work/disk-sync.json"
sync_p50=$(json_number "$work/disk-sync.json" p50_us)
sync_p99=$(json_number "$work/disk-sync.json" p99_us)
sync_p999=$(json_number "$work/disk-sync.json" p999_us)
sync_max=$(json_number "$work/disk-sync.json" max_us)
[ -n "$sync_p99" ] || die "no p99_us in $work/disk-sync.json"
say "disk sync floor: p50 $sync_p50 µs, p99 $sync_p99 µs, p99.9 $sync_p999 µs, max $sync_max µs"

# --- the demo federation -----------------------------------------------------------------
bench_people=$people
bench_federation "$work" "$digit"
cd "$work"
rows=()
certs=$work/certs
dukcapil=$certs/${provider//:/_}

# --- 2. a bare hyper + rustls mTLS server ------------------------------------------------
serve_bare() {
  say "bare mTLS server on 127.0.0.1:$bare_port, CPU $server_cpu"
  taskset -c "$server_cpu" "$bare_mtls" "127.0.0.1:$bare_port" "$dukcapil/gateway.pem" "$dukcapil/gateway.key" \
    "$certs/ca.pem" "$certs/federation-crl.pem" >>bare.log 2>&1 &
  server_pid=$!
  wait_port "$bare_port" 30 "$server_pid" || die "the bare mTLS server did not start (see $work/bare.log)"
}
serve_bare
full_args=(--plain "https://localhost:$bare_port/v1/answer")
half_args=("${full_args[@]}")
measure bare "bare hyper + rustls mTLS"
full_args+=(--handshake-each)
half_args=("${full_args[@]}")
measure bare-handshakes "bare hyper + rustls mTLS, a full handshake per exchange"
stop_server

# --- 3. nginx: mTLS, limit_req and proxy_cache in front of a fixed JSON backend ------------
mkdir -p nginx/temp
cat >nginx/nginx.conf <<EOF
# Written by bench/run.sh. One process (master_process off) so that its CPU and RSS are all
# of nginx's; mTLS as the gateway's listener (client certificate from the federation CA,
# its CRL, TLS 1.2 and 1.3, no session resumption); every request through limit_req (per
# client certificate, a rate that does not bind) and proxy_cache (POSTs, keyed by URI and
# body) to a second server block that answers one fixed JSON body.
daemon off;
master_process off;
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx/temp/body;
  proxy_temp_path $work/nginx/temp/proxy;
  fastcgi_temp_path $work/nginx/temp/fastcgi;
  uwsgi_temp_path $work/nginx/temp/uwsgi;
  scgi_temp_path $work/nginx/temp/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 75s;
  limit_req_zone \$ssl_client_s_dn zone=per_client:10m rate=1000000r/s;
  proxy_cache_path $work/nginx/cache levels=1:2 keys_zone=answers:10m max_size=100m inactive=10m;
  upstream backend {
    server 127.0.0.1:$backend_port;
    keepalive 32;
  }
  server {
    listen 127.0.0.1:$nginx_port ssl;
    server_name localhost;
    ssl_certificate $dukcapil/gateway.pem;
    ssl_certificate_key $dukcapil/gateway.key;
    ssl_client_certificate $certs/ca.pem;
    ssl_crl $certs/federation-crl.pem;
    ssl_verify_client on;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_prefer_server_ciphers on;
    ssl_session_cache off;
    ssl_session_tickets off;
    client_body_buffer_size 64k;
    client_max_body_size 64k;
    location / {
      limit_req zone=per_client burst=1000000 nodelay;
      proxy_cache answers;
      proxy_cache_methods POST;
      proxy_cache_key "\$request_uri|\$request_body";
      proxy_cache_valid 200 10m;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass http://backend;
    }
  }
  server {
    listen 127.0.0.1:$backend_port;
    location / {
      default_type application/json;
      return 200 '{"registered":true,"citizenship":"WNI","deceased":false}';
    }
  }
}
EOF
nginx -t -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log" >nginx/test.log 2>&1 ||
  die "nginx refused its configuration (see $work/nginx/test.log)"
say "nginx $(nginx -v 2>&1 | sed 's/^.*nginx\///') on 127.0.0.1:$nginx_port, CPU $server_cpu"
taskset -c "$server_cpu" nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log" \
  >nginx/stdout.log 2>&1 &
server_pid=$!
wait_port "$nginx_port" 30 "$server_pid" || die "nginx did not start (see $work/nginx/error.log)"
full_args=(--plain "https://localhost:$nginx_port/v1/answer")
half_args=("${full_args[@]}")
measure nginx "nginx mTLS + limit_req + proxy_cache"
full_args+=(--handshake-each)
half_args=("${full_args[@]}")
measure nginx-handshakes "nginx mTLS + limit_req + proxy_cache, a full handshake per exchange"
stop_server

# --- 4. Simpul's provider face -------------------------------------------------------------
serve_provider() {
  say "serving $provider alone on CPU $server_cpu (durable audit in $work/data)"
  RUST_LOG=warn taskset -c "$server_cpu" "$simpul" serve --member "$provider" >>serve.log 2>&1 &
  server_pid=$!
  wait_port "$gateway_port" 120 "$server_pid" || die "simpul serve did not start (see $work/serve.log)"
}
serve_provider
full_args=()
half_args=()
measure hit "Simpul provider, cache hit (2 NIKs)"
full_args=(--handshake-each)
half_args=("${full_args[@]}")
measure hit-handshakes "Simpul provider, cache hit, a full handshake per exchange"
stop_server

# The machine's own floor under those half-load latencies: the bare server paced at the
# provider's half-load rate by the same generator, over as many connections. With a few µs
# of work per request, what its tail holds is the machine's (other processes and kernel
# threads taking the core, the generator), not a server's.
serve_bare
hit_half_rate=$(half_rate hit-full.json)
say "bare mTLS server paced at the provider's half-load rate, $hit_half_rate exchanges/s, $paced_connections connections, $seconds s"
paced bare-paced.json "$hit_half_rate" --plain "https://localhost:$bare_port/v1/answer" ||
  die "the bare server paced at the provider's half-load rate: the run failed (see above)"
stop_server

# The same provider with its whole data directory (the audit store among it) on tmpfs: not
# durable, and not a configuration to run; a reference that shows what of the rows above is
# the disk's (its syncs' waits, its I/O's CPU).
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
  shm_data=$(mktemp -d /dev/shm/simpul-run-data.XXXXXX)
  mv data "$work/data.disk"
  cp -r "$work/data.disk/." "$shm_data/"
  ln -s "$shm_data" data
  serve_provider
  full_args=()
  half_args=()
  measure hit-tmpfs "Simpul provider, cache hit, its data directory on tmpfs (not durable: the disk's share)"
  stop_server
  rm data
  mv "$work/data.disk" data
  rm -rf "$shm_data"
  shm_data=
fi

# Cache misses: every query a resident asked once. The full-load run (its warm-up included)
# and the half-load run take NIKs from two disjoint halves of the register, in random order,
# so no answer is in the cache when it is asked (a restarted gateway starts with none).
residents=$(sqlite3 data/dukcapil.db 'SELECT count(*) FROM residents')
say "cache miss: $residents residents in data/dukcapil.db; writing the queries"
sqlite3 data/dukcapil.db "SELECT '{\"nik\":\"' || nik || '\"}' FROM residents ORDER BY random()" >niks.all
half_lines=$(((residents + 1) / 2))
split -l "$half_lines" niks.all niks.
mv niks.aa queries-full.jsonl
mv niks.ab queries-half.jsonl
rm -f niks.all
serve_provider
full_args=(--queries queries-full.jsonl)
half_args=(--queries queries-half.jsonl)
measure miss "Simpul provider, cache miss ($(thousands "$residents") residents)"
stop_server
# The closed loop's warm-up takes 2 × max(500 × connections, 4000) queries before the run's.
miss_used=$(($(json_number miss-full.json envelopes) + 2 * (connections * 500 > 4000 ? connections * 500 : 4000)))
miss_repeated=0
((miss_used <= half_lines && $(json_number miss-half.json envelopes) <= residents - half_lines)) || miss_repeated=1

# --- memory: the provider idle, then holding many open connections -----------------------------
# Its connection bounds (256, 64 per address in the demo) raised for this, in its limits line.
sed -i 's/^limits = { max_connections = 256, max_connections_per_address = 64, replay_capacity = 5000000 }$/limits = { max_connections = 4096, max_connections_per_address = 4096, replay_capacity = 5000000 }/' config.toml
grep -q 'max_connections_per_address = 4096' config.toml || die "config.toml: Dukcapil's limits line not found"
serve_provider
sleep 2
idle_rss=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$server_pid/status")
say "memory: $provider idle at $((idle_rss / 1024)) MiB; $open_connections connections open, $open_rate exchanges/s over them for $seconds s"
ulimit -Sn "$(ulimit -Hn)"
(($(ulimit -Sn) > open_connections + 100)) ||
  die "the generator may open only $(ulimit -Sn) files: too few for $open_connections connections"
taskset -c "$generator_cpu" "$generator" load --config load.toml --connections "$open_connections" \
  --duration "${seconds}s" --rate "$open_rate" --server-pid "$server_pid" --json >memory.json &
generator_pid=$!
open_rss=0 # the highest VmRSS sampled while the generator ran
while kill -0 "$generator_pid" 2>/dev/null; do
  rss=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$server_pid/status")
  ((rss > open_rss)) && open_rss=$rss
  sleep 0.5
done
wait "$generator_pid" || die "the run with $open_connections connections failed (see above)"
generator_pid=
stop_server

# --- 5. end to end through the local face --------------------------------------------------
# All four gateways in one process (`simpul up`) on the server's core: Kemlu's local face,
# asked by its own system PEDULI-WNI (a client certificate from Kemlu's member CA), asks
# Dukcapil over the federation listener (cache hit at Dukcapil) and answers. The subsystem's
# own rate (50/s in the demo) is raised as the provider's are.
kemlu=$certs/ID_GOV_KEMLU
local_port=${digit}641
sed -i 's/^  rate = { per_second = 50, burst = 100 }$/  rate = { per_second = 1000000, burst = 1000000 }/' config.toml
grep -q '^  rate = { per_second = 1000000, burst = 1000000 }$' config.toml ||
  die "config.toml: PEDULI-WNI's rate line not found"
nik=$(sed -n 's/^ *{ nik = "\([0-9]*\)" },.*$/\1/p' load.toml | head -n 1)
[ -n "$nik" ] || die "load.toml: no NIK among the queries"
echo "{\"purpose\":\"citizen-protection\",\"query\":{\"nik\":\"$nik\"}}" >local-query.jsonl
say "simpul up (four gateways, one process) on CPU $server_cpu; the local face on 127.0.0.1:$local_port"
(RUST_LOG=warn exec taskset -c "$server_cpu" "$simpul" up >>up.log 2>&1) &
server_pid=$!
wait_port "$local_port" 600 "$server_pid" || die "simpul up did not start (see $work/up.log)"
wait_port "$gateway_port" 60 "$server_pid" || die "Dukcapil's gateway did not start (see $work/up.log)"
full_args=(--plain "https://localhost:$local_port/v1/query/citizenship.status/1" --queries local-query.jsonl
  --cert "$kemlu/ID_GOV_KEMLU_PEDULI-WNI.pem" --key "$kemlu/ID_GOV_KEMLU_PEDULI-WNI.key")
half_args=("${full_args[@]}")
measure local "end to end: Kemlu's local face → Dukcapil, cache hit (both gateways' CPU)"

# --- 6. the federated lookup and its four parts, each alone ---------------------------------
# The same process and local face: person.protection-profile asks four providers (Dukcapil,
# BP2MI, BPJSTK, and Kemlu itself) for one NIK that all four registers hold; then each of its
# parts is asked alone through the local face, for the same NIK.
all_four=$(sqlite3 data/dukcapil.db "ATTACH 'data/bp2mi.db' AS b; ATTACH 'data/bpjstk.db' AS j;
  ATTACH 'data/kemlu.db' AS k; SELECT s.nik FROM k.reports s JOIN residents r ON r.nik = s.nik
  JOIN b.placements p ON p.nik = s.nik AND p.status = 'active' JOIN j.participants q ON q.nik = s.nik
  ORDER BY s.nik LIMIT 1")
[ -n "$all_four" ] || die "no NIK in all four registers of the demo"
echo "{\"purpose\":\"citizen-protection\",\"query\":{\"nik\":\"$all_four\"}}" >federated-query.jsonl
parts=(citizenship.status employment.placement insurance.status residence.abroad)
# federated_rows PREFIX LABEL_SUFFIX: the lookup, then each part alone.
federated_rows() {
  local contract
  for contract in person.protection-profile "${parts[@]}"; do
    full_args=(--plain "https://localhost:$local_port/v1/query/$contract/1" --queries federated-query.jsonl
      --cert "$kemlu/ID_GOV_KEMLU_PEDULI-WNI.pem" --key "$kemlu/ID_GOV_KEMLU_PEDULI-WNI.key")
    half_args=("${full_args[@]}")
    if [ "$contract" = person.protection-profile ]; then
      measure "${1}federated" "federated lookup person.protection-profile, 4 parts (all four gateways' CPU)$2"
    else
      measure "${1}part-$contract" "its part $contract alone, through the local face$2"
    fi
  done
}
federated_rows "" ""
stop_server

# --- 7. the same with every provider behind added network delay -----------------------------
# Each gateway's federation listener D44P gets a delay_proxy port D46P in front of it (on the
# generator's core), and the configuration names https://localhost:D46P as its gateway URL,
# so the manifest `simpul up` signs sends every consumer (Kemlu asking the four parts,
# itself included) through the delay. The answers are cache hits, as in 6.
for p in 1 2 3 4; do
  grep -q "^listen = \"127.0.0.1:${digit}44$p\"\$" config.toml || die "config.toml: no listen line for port ${digit}44$p"
  sed -i "s|^listen = \"127.0.0.1:${digit}44$p\"\$|&\ngateway = \"https://localhost:${digit}46$p\"|" config.toml
done
say "delay_proxy: $delay_us µs each way in front of ports ${digit}441–${digit}444, on CPU $generator_cpu"
taskset -c "$generator_cpu" "$delay_proxy" "$delay_us" \
  "127.0.0.1:${digit}461=127.0.0.1:${digit}441" "127.0.0.1:${digit}462=127.0.0.1:${digit}442" \
  "127.0.0.1:${digit}463=127.0.0.1:${digit}443" "127.0.0.1:${digit}464=127.0.0.1:${digit}444" >delay_proxy.log 2>&1 &
proxy_pid=$!
wait_port "${digit}464" 30 "$proxy_pid" || die "delay_proxy did not start (see $work/delay_proxy.log)"
say "simpul up again, its manifest naming the delayed ports"
(RUST_LOG=warn exec taskset -c "$server_cpu" "$simpul" up >>up.log 2>&1) &
server_pid=$!
wait_port "$local_port" 600 "$server_pid" || die "simpul up did not start (see $work/up.log)"
wait_port "$gateway_port" 60 "$server_pid" || die "Dukcapil's gateway did not start (see $work/up.log)"
delay_label=", each provider $(awk -v d="$delay_us" 'BEGIN { printf "%g", d / 1000 }') ms away each way"
federated_rows delayed- "$delay_label"
stop_server
kill "$proxy_pid" 2>/dev/null || true
wait "$proxy_pid" 2>/dev/null || true
proxy_pid=

# Whether this kernel can add network delay at all (tc netem in a throwaway namespace): the
# federated lookup's latency target is set with 2 ms in front of each provider.
netem="not probed (needs root, ip and tc)"
if [ "$(id -u)" = 0 ] && command -v ip >/dev/null && command -v tc >/dev/null; then
  probe_ns=simpul-run-probe-$$
  if ! ip netns add "$probe_ns" 2>/dev/null; then
    netem="not probed (ip netns add failed)"
    probe_ns=
  elif netem_error=$(ip netns exec "$probe_ns" tc qdisc add dev lo root netem delay 2ms 2>&1); then
    netem="available, not used yet"
  else
    netem_error=${netem_error//$'\n'/ }
    netem="not available on this kernel: tc says \"${netem_error#Error: }\""
  fi
  [ -z "$probe_ns" ] || ip netns del "$probe_ns"
  probe_ns=
fi

# --- the table ---------------------------------------------------------------------------
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
commit=$(bench_commit)
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
field() { json_number "$1.json" "$2"; }
verdict() { # OK? FIGURE: "met (FIGURE)" or "**not met** (FIGURE)"
  if [ "$1" = 1 ]; then echo "met ($2)"; else echo "**not met** ($2)"; fi
}
hit_rate=$(field hit-full exchanges_per_s)
miss_rate=$(field miss-full exchanges_per_s)
hit_p99=$(field hit-half p99_us)
hit_max=$(field hit-half max_us)
miss_p99=$(field miss-half p99_us)
miss_max=$(field miss-half max_us)
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", 100 * a / b }'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { print (a >= b) ? 1 : 0 }'; }
lt() { awk -v a="$1" -v b="$2" 'BEGIN { print (a < b) ? 1 : 0 }'; }
ms() { awk -v us="$1" 'BEGIN { printf "%.2f ms", us / 1000 }'; }
max_worst=$(awk -v a="$hit_max" -v b="$miss_max" 'BEGIN { print (a > b) ? a : b }')
# A full handshake's own CPU: per exchange with a handshake each, less per exchange on
# kept-alive connections (the rows with handshakes count each exchange's own work too).
handshake_us() { awk -v a="$(field "$1-handshakes-full" cpu_us_per_exchange)" -v b="$(field "$1-full" cpu_us_per_exchange)" 'BEGIN { printf "%.0f", a - b }'; }
hit_handshake_us=$(handshake_us hit)
bare_handshake_us=$(handshake_us bare)
nginx_handshake_us=$(handshake_us nginx)
local_p99=$(field local-half p99_us)
local_max=$(field local-half max_us)
federated_cpu=$(field federated-full cpu_us_per_exchange)
federated_p50=$(field federated-half p50_us)
parts_cpu=0
slowest_part_p50=0
slowest_part=
for contract in "${parts[@]}"; do
  parts_cpu=$(awk -v a="$parts_cpu" -v b="$(field "part-$contract-full" cpu_us_per_exchange)" 'BEGIN { print a + b }')
  p50=$(field "part-$contract-half" p50_us)
  if (($(ge "$p50" "$slowest_part_p50"))); then
    slowest_part_p50=$p50
    slowest_part=$contract
  fi
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
delayed_p50=$(field delayed-federated-half p50_us)
delayed_slowest_p50=0
delayed_slowest=
for contract in "${parts[@]}"; do
  p50=$(field "delayed-part-$contract-half" p50_us)
  if (($(ge "$p50" "$delayed_slowest_p50"))); then
    delayed_slowest_p50=$p50
    delayed_slowest=$contract
  fi
done
delay_added_us=$(awk -v a="$delayed_slowest_p50" -v b="$(field "part-$delayed_slowest-half" p50_us)" 'BEGIN { print a - b }')

section=$work/section.md
{
  echo "## Side by side: bench/run.sh"
  echo
  echo '```sh'
  echo "$command_line"
  echo '```'
  echo
  echo "Written by the script, which replaces this section on each run; the figures are that run's."
  echo "Run $started_at at commit $commit on $(nproc) CPUs ($cpu_model), $(uname -sr);"
  echo "load average $load_start at the start and $load_end at the end (the machine is shared: other"
  echo "work may run on both cores during the run, and the load average counts it; compare the rows"
  echo "of one run with each other rather than with other runs). Each server pinned to"
  echo "CPU $server_cpu, the load generator (\`simpul-conformance load\`, one mTLS client for every"
  echo "row) to CPU $generator_cpu; $seconds s per measurement."
  echo
  echo "**Crypto ceiling**: ES256 verify $verify_us µs + sign $sign_us µs per exchange through"
  echo "\`contracts::jws\` (aws-lc-rs), the gateway's own code (\`gateway/examples/crypto_ceiling.rs\`):"
  echo "**$(thousands "$ceiling") exchanges/s** on one core."
  echo
  table_header
  printf '%s\n' "${rows[@]}"
  echo
  echo "Exchanges/s: closed loop over $connections keep-alive connections. Core busy, at full load:"
  echo "the server's (that rate times its CPU per exchange) and the generator's (its own CPU time"
  echo "over the run). Where neither is near 100 %, something else set the rate: waits (for the"
  echo "provider, the audit log's disk syncs) or other work on this shared machine taking the same"
  echo "cores. Half load: open loop at half the full-load rate over"
  echo "$paced_connections connections, each latency from when its exchange was due (one task keeps the"
  echo "schedule: tokio's timer to 3 ms ahead, then the clock; CONFORMANCE.md, \`--rate\`). CPU: the server"
  echo "process's user + system time over the run (/proc) per exchange; peak RSS: its \`VmHWM\` at"
  echo "the end. Not answered: both runs' exchanges without a 2xx (bare, nginx, local face) or 200"
  echo "(provider face), without an answer, or left unsent."
  echo
  echo "- **bare hyper + rustls mTLS**: \`gateway/examples/bare_mtls.rs\` with the gateway's TLS"
  echo "  configuration (\`gateway::tls::federation_server_config\`) and Dukcapil's certificate;"
  echo "  reads each POST's body, answers one fixed JSON body."
  echo "- **nginx**: Debian's $(nginx -v 2>&1 | sed 's/^.*: //') as one process; mTLS against the"
  echo "  federation CA and its CRL, \`limit_req\` per client certificate (not binding) and"
  echo "  \`proxy_cache\` of POSTs (every answer after the first a hit) in front of a second server"
  echo "  block answering a fixed JSON body. The generator (\`--plain\`) POSTs the contract's first"
  echo "  query as JSON to these two."
  echo "- **Simpul provider**: \`simpul serve --member $provider\` of the demo federation"
  echo "  (\`bench/lib.sh\`, rate and replay bounds raised): signed envelopes, the whole provider"
  echo "  path with the durable audit append (SQLite: one journal frame and \`fdatasync\` per group commit, AUDIT.md §7.3) on this machine's"
  echo "  disk. Cache hit: the two NIKs of \`conformance/demo.toml\` cycle. Cache miss: a restarted"
  echo "  gateway (empty cache) asked for distinct residents of the $(thousands "$residents") in its"
  echo "  register (\`data.people = $(thousands "$people")\`), in random order, none twice."
  if ((miss_repeated)); then
    echo "  **This run asked more queries than each half of the register holds: some NIKs were asked"
    echo "  twice, and may have been cache hits.**"
  fi
  echo "- **its data directory on tmpfs**: the same provider, its \`data\` directory (the audit"
  echo "  store, its journal and the register) copied to \`/dev/shm\`: no disk waits, not durable, and"
  echo "  not a way to run it; a reference for what of the rows above is the disk's."
  echo "- **end to end**: \`simpul up\` (the four gateways in one process: CPU and RSS are both"
  echo "  gateways' and the two idle ones'). Kemlu's local face, asked by its system PEDULI-WNI"
  echo "  (\`POST /v1/query/citizenship.status/1\`, \`--plain\` with that system's certificate), asks"
  echo "  Dukcapil with a signed envelope; both audit logs durable; cache hit at Dukcapil. Its peak"
  echo "  RSS includes \`simpul up\`'s start-up, which generates the demo's population in memory."
  echo "- **federated lookup**: the same \`simpul up\`, Kemlu's local face asked for"
  echo "  \`person.protection-profile/1\` (four parts: citizenship at Dukcapil, placement at BP2MI,"
  echo "  insurance at BPJSTK, residence at Kemlu) for NIK $all_four, which all four registers"
  echo "  hold, then each part alone for the same NIK (so the parts' sum counts the local face four"
  echo "  times); every provider's answer a cache hit after the first. Loopback, no added delay."
  echo "- **$delay_label**: the same again after \`simpul up\` restarted with every member's gateway"
  echo "  URL in the manifest pointing at \`gateway/examples/delay_proxy.rs\` (on the generator's"
  echo "  core), which holds every byte $delay_us µs in each direction (timed by a thread with the"
  echo "  kernel's high-resolution timer) before passing it to the gateway's federation listener: every"
  echo "  provider, Kemlu's own included, is that far from the consumer. A userspace proxy, not"
  echo "  \`tc netem\` in a network namespace: tc netem $netem."
  echo "- **a full handshake per exchange**: the same server, the generator with \`--handshake-each\`"
  echo "  (a new connection for every exchange, no TLS session resumption on either side): its"
  echo "  exchanges/s are full mTLS handshakes/s, each latency includes a handshake."
  echo
  echo "**Memory** of the provider (\`simpul serve\`, its connection bounds raised for this): $((idle_rss / 1024)) MiB"
  echo "resident idle after start-up; at most $((open_rss / 1024)) MiB resident (sampled every 0.5 s) while the generator"
  echo "held $(thousands "$open_connections") mTLS connections open and asked $open_rate exchanges/s over them for $seconds s"
  echo "($(thousands "$(json_number memory.json ok)") of $(thousands "$(json_number memory.json exchanges)") answered 200, $(json_number memory.json errors) without an answer); peak over its life"
  echo "(\`VmHWM\`) $(awk -v k="$(json_number memory.json peak_rss_kib)" 'BEGIN { printf "%.1f", k / 1024 }') MiB."
  echo
  echo "Issue #13's targets this table checks:"
  echo
  echo "- provider face, cache hit, at least 60 % of the crypto ceiling: $(verdict "$(ge "$hit_rate" "$(awk -v c="$ceiling" 'BEGIN { print 0.6 * c }')")" "$(pct "$hit_rate" "$ceiling") %")"
  echo "- cache miss on 1,000,000 residents, at least 80 % of the cache-hit rate: $(verdict "$(ge "$miss_rate" "$(awk -v c="$hit_rate" 'BEGIN { print 0.8 * c }')")" "$(pct "$miss_rate" "$hit_rate") %")$( ((residents >= 1000000)) || echo ", but on $(thousands "$residents") residents: not the target's register")"
  echo "- provider face, p99 at half load under 2 ms: $(verdict "$(lt "$hit_p99" 2000)" "cache hit $(ms "$hit_p99")"); $(verdict "$(lt "$miss_p99" 2000)" "cache miss $(ms "$miss_p99")")"
  if [ -f hit-tmpfs-half.json ]; then
    echo "  - what of it is the disk's: this disk's own 2 KiB write + \`fdatasync\`, back to back (\`gateway/examples/disk_sync.rs\`, as the journal's group commit writes), p50 $(ms "$sync_p50"), p99 $(ms "$sync_p99"), p99.9 $(ms "$sync_p999"), max $(ms "$sync_max"); the same provider with its data directory on tmpfs (not durable), at half its own full-load rate: p50 $(ms "$(field hit-tmpfs-half p50_us)"), p99 $(ms "$(field hit-tmpfs-half p99_us)"), max $(ms "$(field hit-tmpfs-half max_us)"), $(thousands "$(field hit-tmpfs-half cpu_us_per_exchange)") µs of CPU per exchange against $(thousands "$(field hit-half cpu_us_per_exchange)") on disk"
  fi
  echo "  - what the machine adds at that rate: the bare hyper + rustls server ($(thousands "$(field bare-paced cpu_us_per_exchange)") µs of CPU per request in this run) paced at $(thousands "$hit_half_rate") exchanges/s by the same generator: p50 $(ms "$(field bare-paced p50_us)"), p99 $(ms "$(field bare-paced p99_us)"), max $(ms "$(field bare-paced max_us)"). A stall of the core that long delays every exchange due meanwhile, and at the provider's few hundred µs per exchange the queue it leaves takes longer to drain (BENCHMARKS.md, \"What the machine adds to the tail\")"
  echo "- provider face, maxima under 20 ms: $(verdict "$(lt "$max_worst" 20000)" "worst $(ms "$max_worst")")"
  echo "- federated lookup, CPU at most 1.1 × the sum of its parts (full load, all four gateways' process): $(verdict "$(lt "$(ratio "$federated_cpu" "$parts_cpu")" 1.1001)" "$(ratio "$federated_cpu" "$parts_cpu") ×: $(thousands "$federated_cpu") µs against $(thousands "$parts_cpu") µs")"
  echo "- federated lookup, latency at most 1.3 × its slowest part with every provider $delay_us µs away each way: $(verdict "$(lt "$(ratio "$delayed_p50" "$delayed_slowest_p50")" 1.3001)" "$(ratio "$delayed_p50" "$delayed_slowest_p50") × at p50, half load: $(ms "$delayed_p50") against $(ms "$delayed_slowest_p50") for the slowest part alone, $delayed_slowest; the proxy added $(ms "$delay_added_us") to that part's p50, against the $((2 * delay_us)) µs asked for a round trip: the proxy's own wake-ups and work on the generator's core add to it, and the delayed answers change how the gateways' work interleaves on their one core"). Without delay, with the four gateways on one core: $(ratio "$federated_p50" "$slowest_part_p50") × ($(ms "$federated_p50") against $(ms "$slowest_part_p50"), $slowest_part)"
  echo "- end to end through the local face, p99 at half load under 5 ms: $(verdict "$(lt "$local_p99" 5000)" "$(ms "$local_p99")"); maximum under 20 ms: $(verdict "$(lt "$local_max" 20000)" "$(ms "$local_max")")"
  echo
  echo "The audit store's targets (20,000 appends/s at 64 writers, p50 under 0.5 ms at 1 writer)"
  echo "are measured by \`cargo bench -p simpul-audit-store\` (above), and the provider with a 10 GB"
  echo "audit log by bench/grown.sh (below), not here."
  echo "A full mTLS handshake's own CPU (per exchange with a handshake each, less per exchange on"
  echo "kept-alive connections): Simpul $(thousands "$hit_handshake_us") µs, the bare rustls server $(thousands "$bare_handshake_us") µs"
  echo "($(ratio "$hit_handshake_us" "$bare_handshake_us") ×), nginx $(thousands "$nginx_handshake_us") µs. The rows' handshakes/s count each exchange's own"
  echo "work as well, so Simpul's, whose exchange does the most, is the lowest beside the bare server."
  echo "Whether memory and handshakes"
  echo "are \"no worse than today\" is for a comparison with an earlier run of this script (this"
  echo "section in the file's history)."
} >"$section"

echo
cat "$section"
[ -z "$doc" ] || write_section "$doc" "## Side by side: bench/run.sh" "$section"
say "reports and logs in $work"
