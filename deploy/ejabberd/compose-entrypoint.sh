#!/bin/sh
# Runs ejabberd in the foreground for docker-compose.yml: fills the component
# secret into the configuration, starts the node, creates the demo users
# (alice/alice, bob/bob) with herald@broadcast.localhost on their roster
# (subscription both), and stops the node cleanly on SIGTERM.
set -eu
: "${HERALD_COMPONENT_SECRET:?set HERALD_COMPONENT_SECRET}"
config=/var/lib/ejabberd/ejabberd.yml
sed "s|@COMPONENT_SECRET@|$HERALD_COMPONENT_SECRET|" /etc/ejabberd/ejabberd.compose.yml >"$config"
# Debian's /etc/ejabberd/ejabberdctl.cfg sets EJABBERD_CONFIG_PATH and is read
# after the command line, so it would override --config: skip it.
ctl() { ejabberdctl --ctl-config /dev/null --config "$config" "$@"; }

ctl foreground &
node=$!
trap 'ctl stop >/dev/null; wait "$node"; exit 0' TERM INT
ctl started
for user in alice bob; do
  ctl register "$user" localhost "$user" || true # already registered
  ctl add_rosteritem "$user" localhost herald broadcast.localhost Herald Herald both
done
wait "$node"
