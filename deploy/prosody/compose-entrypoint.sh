#!/bin/sh
# Creates the demo users (alice/alice, bob/bob; registering again only resets
# the password) and runs Prosody in the foreground.
set -eu
: "${HERALD_COMPONENT_SECRET:?set HERALD_COMPONENT_SECRET}"
for user in alice bob; do
  prosodyctl register "$user" localhost "$user"
done
exec prosody -F
