//! systemd's notifications, as a `Type=notify` unit with `WatchdogSec=`
//! gets them (deploy/systemd/herald.service): the real `herald` binary
//! with `NOTIFY_SOCKET` pointing at a datagram socket of the test's and
//! `WATCHDOG_USEC` set, on a real Prosody and the shared RabbitMQ.
//!
//! What an operator relies on: Herald says it is ready, pings the watchdog
//! while its event loop turns, and stops pinging while it is frozen (so
//! that systemd kills it), and pings again once it turns again.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use herald_testkit::herald::{Herald, Names};
use herald_testkit::prosody::Prosody;
use herald_testkit::server::signal;

/// The watchdog interval given to Herald: it pings every half of it.
const WATCHDOG: Duration = Duration::from_millis(200);
/// Far longer than Herald takes between two pings.
const SILENCE: Duration = Duration::from_secs(2);

/// The next notification within `wait`, if any.
fn next(socket: &UnixDatagram, wait: Duration) -> Option<String> {
    socket.set_read_timeout(Some(wait)).unwrap();
    let mut buffer = [0u8; 256];
    let length = socket.recv(&mut buffer).ok()?;
    Some(String::from_utf8_lossy(&buffer[..length]).into_owned())
}

/// Reads notifications until none comes within `quiet`.
fn drain(socket: &UnixDatagram, quiet: Duration) {
    while next(socket, quiet).is_some() {}
}

#[test]
fn herald_tells_systemd_it_is_ready_and_pings_the_watchdog_only_while_its_loop_turns() {
    let server = Prosody::start(&["alice"]);
    let names = Names::unique();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
    let usec = WATCHDOG.as_micros().to_string();
    let env = [
        ("NOTIFY_SOCKET", path.to_str().unwrap()),
        ("WATCHDOG_USEC", usec.as_str()),
    ];
    let mut herald = Herald::start_with_env(&server, &names, dir.path(), &env);

    assert_eq!(next(&socket, SILENCE).as_deref(), Some("READY=1"));
    for _ in 0..5 {
        assert_eq!(next(&socket, SILENCE).as_deref(), Some("WATCHDOG=1"));
    }

    // Frozen: whatever it sent before the signal landed is read, then
    // nothing comes.
    let pid = herald.pid().expect("Herald runs");
    signal(pid, "STOP");
    drain(&socket, WATCHDOG);
    assert_eq!(next(&socket, SILENCE), None, "a frozen Herald pinged");

    signal(pid, "CONT");
    assert_eq!(next(&socket, SILENCE).as_deref(), Some("WATCHDOG=1"));
    assert_eq!(herald.stop(), Some(0), "{}", herald.log_text());
}
