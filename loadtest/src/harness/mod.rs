//! The integration tests' server harnesses (tests/support/), compiled into
//! the load test as they are: Prosody and ejabberd started as private
//! processes on loopback with users provisioned in bulk (Prosody: storage
//! files written directly; ejabberd: one RPC that loops inside the node).
//! Both configs (deploy/prosody/prosody.cfg.lua.in,
//! deploy/ejabberd/ejabberd.yml.in) already carry the load settings: no
//! mod_limits, generational GC and 64 KiB reads for Prosody; no shaper, a
//! large accept backlog, `max_fsm_queue` and `cache_size` for ejabberd.

// The harnesses offer more than the load test calls (restart, logs, ...).
#![allow(dead_code)]

#[path = "../../../tests/support/ejabberd.rs"]
pub mod ejabberd;
#[path = "../../../tests/support/prosody.rs"]
pub mod prosody;
#[path = "../../../tests/support/server.rs"]
pub mod server;

pub use server::random_hex;
