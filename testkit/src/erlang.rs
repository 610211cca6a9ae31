//! What the Erlang servers (ejabberd, RabbitMQ's private nodes) share: the
//! epmd every node registers its name with, and booting a cluster's nodes
//! side by side.

use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// epmd's well-known port, where every node registers its name.
const EPMD_ADDR: &str = "127.0.0.1:4369";

/// Makes sure an epmd answers on 127.0.0.1:4369, where nodes register their
/// names. RabbitMQ's epmd serves when it runs; otherwise start one bound to
/// loopback. It keeps running after the test (epmd is shared by every node
/// on the machine; it is never stopped here). Two tests starting one at once
/// is harmless: the second epmd finds the port taken and exits.
pub fn ensure_epmd() {
    let addr: SocketAddr = EPMD_ADDR.parse().unwrap();
    let answers = || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok();
    if answers() {
        return;
    }
    let status = Command::new("epmd")
        .arg("-daemon")
        .env("ERL_EPMD_ADDRESS", "127.0.0.1")
        .stdin(Stdio::null())
        .status()
        .unwrap_or_else(|e| {
            panic!("no epmd answers on {EPMD_ADDR} and `epmd -daemon` cannot run ({e})")
        });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !answers() {
        assert!(
            Instant::now() < deadline,
            "no epmd answers on {EPMD_ADDR} after `epmd -daemon` ({status})"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Boots `size` nodes at once, `boot(index)` each on a thread of its own
/// (an Erlang node takes seconds to start, mostly waiting), and returns
/// them in index order. A node that did not boot panics here, and the
/// nodes that did are dropped (and so stopped) on the way out.
pub fn boot_side_by_side<T: Send>(size: usize, boot: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let boot = &boot;
    std::thread::scope(|scope| {
        let booting: Vec<_> = (0..size)
            .map(|index| scope.spawn(move || boot(index)))
            .collect();
        booting
            .into_iter()
            .map(|node| node.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}
