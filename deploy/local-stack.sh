#!/usr/bin/env bash
# Brings up a local Prosody + RabbitMQ + Herald on loopback and sends a first
# broadcast you can watch arrive.
#
#   deploy/local-stack.sh          start everything and send a first broadcast
#   deploy/local-stack.sh stop     stop what this script started
#
# State lives in $HERALD_LOCAL_DIR (default: .herald-local in the repository).
# Prosody listens on 127.0.0.1:5222 (c2s) and :5347 (components), or, where
# another server (a system Prosody, say) has them, on the first free ports
# from 15222 and 15347 (it says which); users
# alice/alice and bob/bob have herald@broadcast.localhost on their roster.
# Herald serves its metrics and health endpoints on 127.0.0.1:9102. If a
# `prometheus` binary is on PATH (Debian: apt install prometheus), it is
# started too, on 127.0.0.1:9090, scraping Herald with its alert rules.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
state=${HERALD_LOCAL_DIR:-$repo/.herald-local}
c2s_port=${HERALD_LOCAL_C2S_PORT:-5222}
component_port=${HERALD_LOCAL_COMPONENT_PORT:-5347}
prometheus_port=${HERALD_LOCAL_PROMETHEUS_PORT:-9090}
# Herald's default http.listen.
metrics=127.0.0.1:9102
secret=local-secret-change-me

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
  for _ in $(seq 1 100); do port_open "$1" && return 0; sleep 0.2; done
  echo "nothing listens on 127.0.0.1:$1 after 20 s ($2)" >&2
  return 1
}
stop_pidfile() {
  local file=$1
  [ -f "$file" ] || return 0
  local pid
  pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  fi
  rm -f "$file"
}

if [ "${1:-start}" = "stop" ]; then
  stop_pidfile "$state/prometheus.pid"
  stop_pidfile "$state/herald.pid"
  stop_pidfile "$state/prosody.pid"
  say "stopped Herald, Prosody and Prometheus (RabbitMQ, if running, was left alone)"
  exit 0
fi

install_missing() {
  local missing=()
  command -v prosody >/dev/null || missing+=(prosody)
  port_open 5672 || command -v rabbitmq-server >/dev/null || missing+=(rabbitmq-server)
  # Cargo links with cc; a Rust toolchain from rustup does not bring one.
  command -v cc >/dev/null || missing+=(gcc libc6-dev)
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "please install: ${missing[*]} (Debian packages)" >&2
    exit 1
  fi
  say "installing ${missing[*]}"
  # Keep Debian's maintainer scripts from starting Prosody and RabbitMQ as
  # system services (default configuration, on every interface, and on the
  # ports this script's own Prosody needs). An existing policy is kept.
  local own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
  fi
  local status=0
  { apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } ||
    status=$?
  [ $own_policy -eq 0 ] || rm -f /usr/sbin/policy-rc.d
  [ $status -eq 0 ] || exit $status
  # Their services stay enabled for the next boot, where they would take
  # the ports this script uses.
  local services=()
  for package in "${missing[@]}"; do
    case $package in prosody | rabbitmq-server) services+=("$package") ;; esac
  done
  [ ${#services[@]} -eq 0 ] ||
    say "not started; to keep them off at boot: systemctl disable ${services[*]}"
}

install_missing
mkdir -p "$state"

if ! port_open 5672; then
  say "starting RabbitMQ on 127.0.0.1:5672"
  RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 rabbitmq-server -detached
  wait_port 5672 RabbitMQ
fi

# Prosody: config from the template the tests use, users written as files.
stop_pidfile "$state/prosody.pid"
# A host that already runs an XMPP server (Prosody as a system service,
# say) has 5222 and 5347 taken: this Prosody then takes the next free ports,
# unless they were set explicitly.
free_port_from() {
  local port=$1
  while port_open "$port"; do port=$((port + 1)); done
  echo "$port"
}
for pair in "c2s_port HERALD_LOCAL_C2S_PORT" "component_port HERALD_LOCAL_COMPONENT_PORT"; do
  read -r name knob <<<"$pair"
  port=${!name}
  port_open "$port" || continue
  if [ -n "${!knob:-}" ]; then
    echo "port $port is taken; set $knob to a free one" >&2
    exit 1
  fi
  printf -v "$name" '%s' "$(free_port_from $((port + 10000)))"
  say "127.0.0.1:$port is taken (another XMPP server?): using ${!name} instead"
done
data="$state/prosody-data"
mkdir -p "$data/localhost/accounts" "$data/localhost/roster" "$state/certs"
for user in alice bob; do
  printf 'return {\n\t["password"] = "%s";\n};\n' "$user" >"$data/localhost/accounts/$user.dat"
  printf 'return {\n\t[false] = { ["version"] = 1; ["pending"] = {}; };\n\t["herald@broadcast.localhost"] = { ["subscription"] = "both"; ["groups"] = {}; ["name"] = "Herald"; };\n};\n' \
    >"$data/localhost/roster/$user.dat"
done
sed -e "s|@DATA_DIR@|$data|" -e "s|@PID_FILE@|$state/prosody.pid|" -e "s|@LOG_LEVEL@|info|" \
  -e "s|@LOG_FILE@|$state/prosody.log|" -e "s|@C2S_PORT@|$c2s_port|" \
  -e "s|@COMPONENT_PORT@|$component_port|" -e "s|@CERTS_DIR@|$state/certs|" \
  -e "s|@COMPONENT_SECRET@|$secret|" \
  "$repo/deploy/prosody/prosody.cfg.lua.in" >"$state/prosody.cfg.lua"
say "starting Prosody (c2s 127.0.0.1:$c2s_port, components 127.0.0.1:$component_port)"
prosody -F --config "$state/prosody.cfg.lua" >>"$state/prosody.out" 2>&1 &
echo $! >"$state/prosody.pid"
wait_port "$c2s_port" "Prosody c2s, see $state/prosody.log"
wait_port "$component_port" "Prosody components, see $state/prosody.log"

say "building Herald"
cd "$repo"
cargo build --quiet --bin herald --example first_broadcast

stop_pidfile "$state/herald.pid"
say "starting Herald as broadcast.localhost"
HERALD_XMPP__PORT=$component_port HERALD_XMPP__SECRET=$secret HERALD_STORE__PATH="$state/herald.store" \
  "${CARGO_TARGET_DIR:-$repo/target}/debug/herald" --config "$repo/deploy/herald.toml" >"$state/herald.log" 2>&1 &
echo $! >"$state/herald.pid"
for _ in $(seq 1 100); do
  grep -q "taking jobs" "$state/herald.log" 2>/dev/null && break
  kill -0 "$(cat "$state/herald.pid")" 2>/dev/null || { cat "$state/herald.log"; exit 1; }
  sleep 0.2
done

stop_pidfile "$state/prometheus.pid"
if command -v prometheus >/dev/null; then
  if port_open "$prometheus_port"; then
    echo "port $prometheus_port is taken; set HERALD_LOCAL_PROMETHEUS_PORT" >&2
    exit 1
  fi
  cat >"$state/prometheus.yml" <<EOF
global:
  scrape_interval: 5s
  evaluation_interval: 5s
rule_files:
  - $repo/deploy/prometheus/alerts.yml
scrape_configs:
  - job_name: herald
    static_configs:
      - targets: ["$metrics"]
EOF
  say "starting Prometheus on 127.0.0.1:$prometheus_port"
  prometheus --config.file="$state/prometheus.yml" --storage.tsdb.path="$state/prometheus-data" \
    --web.listen-address="127.0.0.1:$prometheus_port" >"$state/prometheus.log" 2>&1 &
  echo $! >"$state/prometheus.pid"
  wait_port "$prometheus_port" "Prometheus, see $state/prometheus.log"
fi

say "sending a first broadcast to alice@localhost"
"${CARGO_TARGET_DIR:-$repo/target}/debug/examples/first_broadcast" alice@localhost alice "127.0.0.1:$c2s_port"

cat <<EOF

Herald is running. Where to look:
  Herald's log:   $state/herald.log
  Prosody's log:  $state/prosody.log
  Metrics:        http://$metrics/metrics
  Readiness:      http://$metrics/readyz
EOF
if [ -f "$state/prometheus.pid" ]; then
  echo "  Prometheus:     http://127.0.0.1:$prometheus_port (its log: $state/prometheus.log)"
else
  echo "  (with Prometheus installed, e.g. apt install prometheus, this script runs one)"
fi
cat <<EOF
  Log in with any XMPP client as alice@localhost / alice (or bob / bob) on 127.0.0.1:$c2s_port
  (plaintext, no TLS), then publish a job to the queue broadcast.jobs:
    {"id": "hello-1", "to": ["alice@localhost", "bob@localhost"], "body": "Hello!"}
  Reports arrive on the topic exchange broadcast.events with routing key job.report.
Stop with: deploy/local-stack.sh stop
EOF
