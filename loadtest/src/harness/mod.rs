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

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// 16 random-enough hex digits (node names, cookies, secrets, AMQP names):
/// std's per-process random hash keys mixed with the time, pid and a counter.
pub fn random_hex() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("{:016x}", h.finish())
}
