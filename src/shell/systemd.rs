//! systemd's service notifications (`sd_notify`), when systemd asks for
//! them (`Type=notify`, `WatchdogSec=`): `READY=1` once Herald runs, then
//! `WATCHDOG=1` at half the interval systemd set. The watchdog's pings come
//! from a task on the event loop's own thread, so a Herald that stops
//! turning (frozen, or stuck in a computation) stops sending them, and
//! systemd kills it and starts it again. That matters beyond a restart: a
//! frozen Herald on ejabberd keeps its component connection open, and the
//! stanzas of a standby that took over would be shared with it until it
//! closes.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Where systemd listens for notifications: `NOTIFY_SOCKET`.
pub struct Notifier {
    socket: UnixDatagram,
    to: SocketAddr,
}

impl Notifier {
    /// The notifier systemd asked for, if any.
    pub fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let to = match notify_address(&path) {
            Ok(to) => to,
            Err(e) => {
                tracing::warn!(error = %e, ?path, "NOTIFY_SOCKET is no socket address; not notifying systemd");
                return None;
            }
        };
        let socket = UnixDatagram::unbound()
            .and_then(|socket| socket.set_nonblocking(true).map(|()| socket))
            .map_err(|e| tracing::warn!(error = %e, "cannot open a socket to notify systemd"))
            .ok()?;
        Some(Notifier { socket, to })
    }

    /// Tells systemd that Herald runs.
    pub fn ready(&self) {
        self.send("READY=1");
    }

    /// Pings systemd's watchdog, if it has one for this process, from now
    /// on at half its interval, for as long as the runtime turns.
    pub fn keep_watchdog(self) {
        let Some(every) = watchdog_interval() else {
            return;
        };
        tracing::info!(?every, "pinging systemd's watchdog");
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            loop {
                ticks.tick().await;
                self.send("WATCHDOG=1");
            }
        });
    }

    fn send(&self, state: &str) {
        // A datagram either goes at once or not at all: systemd not
        // reading must not stall the loop.
        if let Err(e) = self.socket.send_to_addr(state.as_bytes(), &self.to) {
            tracing::warn!(error = %e, state, "cannot notify systemd");
        }
    }
}

/// Half of `WATCHDOG_USEC`, when `WATCHDOG_PID` (if set) is this process.
fn watchdog_interval() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim() != std::process::id().to_string() {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// A path, or with a leading `@` a name in Linux's abstract namespace.
fn notify_address(path: &OsStr) -> io::Result<SocketAddr> {
    match path.as_bytes().strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(path),
    }
}
