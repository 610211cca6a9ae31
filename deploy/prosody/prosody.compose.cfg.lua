-- Prosody 0.12 configuration for docker-compose.yml (service `prosody`).
--
-- Listens on all interfaces of the container: only the compose network and
-- the ports docker-compose.yml publishes (on the host's loopback) reach it.
-- Plaintext c2s for trying Herald out; do not expose this to a real network.
-- The component secret comes from the environment variable
-- HERALD_COMPONENT_SECRET (Prosody reads ENV_<NAME> as os.getenv("<NAME>")).

data_path = "/var/lib/prosody"
log = {
	{ levels = { min = "info" }, to = "console" };
}

interfaces = { "*" }
c2s_ports = { 5222 }
-- The component listener is private: without this it binds local_interfaces
-- (loopback) only, and Herald in its own container could not reach it.
component_ports = { 5347 }
component_interfaces = { "*" }
s2s_ports = {}
c2s_direct_tls_ports = {}
legacy_ssl_ports = {}
http_ports = {}
https_ports = {}

c2s_require_encryption = false
s2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_hashed"
storage = "internal"

-- Measured 4x less CPU per login than the default incremental GC.
gc = { mode = "generational" }
-- Read up to 64 KiB per call: avoids the read stall of server_epoll under
-- presence churn (see docs/servers.md).
network_settings = { read_size = 65536 }

-- mod_limits is not loaded (it throttles c2s connections to 10 kB/s), nor
-- mod_smacks (a dropped client must go unavailable at once).
modules_enabled = {
	"roster";
	"saslauth";
	"disco";
	"ping";
	"groups";
}
modules_disabled = {
	"s2s";
	"s2s_auth_certs";
}

-- Puts herald@broadcast.localhost (subscription both) on every user's
-- roster, so that every user's presence reaches Herald.
groups_file = "/etc/prosody/herald-groups.txt"

VirtualHost "localhost"

Component "broadcast.localhost"
	component_secret = ENV_HERALD_COMPONENT_SECRET
