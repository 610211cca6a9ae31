//! A loopback TCP proxy between Herald and a server's component port that
//! can cut the connection in the middle of a stanza.
//!
//! It forwards both directions byte for byte. Once [`CutProxy::arm`]ed, it
//! watches one direction for the `nth` occurrence of a pattern (a stanza's
//! opening, `<message` say) and forwards only the first half of that
//! stanza's start tag: the receiving side then sees its stream end there,
//! in the middle of an attribute. The other direction goes on until its
//! sender closes, as TCP does when one side's stream ends; so the server
//! can still answer what it read before the cut, and neither side gets a
//! reset that would discard bytes already sent to it. Then the connection
//! is gone. One cut per arming; later connections pass untouched.
//!
//! Connections are relayed one at a time, like the component port of a
//! real server holds one stream per domain: the next one (Herald
//! reconnecting) is relayed once the cut one is closed on both sides, so
//! the server never sees the new stream while the old one still lives.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How long one direction may go on after the other ended; a peer that
/// neither closes nor sends is then dropped.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// Bytes kept of what was forwarded, to find a pattern split between reads.
const TAIL: usize = 64;

/// Which bytes a cut applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    HeraldToServer,
    ServerToHerald,
}

#[derive(Debug)]
struct Armed {
    direction: Direction,
    pattern: Vec<u8>,
    /// Occurrences still to let through before the one that is cut.
    skip: usize,
}

#[derive(Debug, Default)]
struct State {
    armed: Option<Armed>,
    connections: usize,
    cuts: usize,
}

pub struct CutProxy {
    port: u16,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl CutProxy {
    /// Listens on a free loopback port and relays each connection to
    /// `127.0.0.1:upstream`.
    pub async fn start(upstream: u16) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let task = tokio::spawn(serve(listener, upstream, Arc::clone(&state)));
        CutProxy { port, state, task }
    }

    /// The port Herald is to connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Cuts `direction` in the `nth` (from 1) occurrence of `pattern` from
    /// now on, whichever connection carries it.
    pub fn arm(&self, direction: Direction, pattern: &str, nth: usize) {
        assert!(nth >= 1 && (1..=TAIL).contains(&pattern.len()));
        self.state.lock().unwrap().armed = Some(Armed {
            direction,
            pattern: pattern.as_bytes().to_vec(),
            skip: nth - 1,
        });
    }

    /// Connections relayed so far (the one being relayed included).
    pub fn connections(&self) -> usize {
        self.state.lock().unwrap().connections
    }

    /// Cuts made so far.
    pub fn cuts(&self) -> usize {
        self.state.lock().unwrap().cuts
    }

    /// Waits until `count` cuts were made; panics after `timeout`.
    pub async fn wait_cuts(&self, count: usize, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.cuts() < count {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} cuts within {timeout:?}, expected {count}",
                self.cuts()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, upstream: u16, state: Arc<Mutex<State>>) {
    while let Ok((herald, _)) = listener.accept().await {
        // A server that is down refuses the proxy: Herald sees its
        // connection closed, as if it had been refused itself.
        let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
            continue;
        };
        let _ = herald.set_nodelay(true);
        let _ = server.set_nodelay(true);
        state.lock().unwrap().connections += 1;
        relay(herald, server, &state).await;
    }
}

/// Relays one connection until both directions have ended.
async fn relay(herald: TcpStream, server: TcpStream, state: &Mutex<State>) {
    let (herald_in, herald_out) = herald.into_split();
    let (server_in, server_out) = server.into_split();
    let to_server = pump(herald_in, server_out, Direction::HeraldToServer, state);
    let to_herald = pump(server_in, herald_out, Direction::ServerToHerald, state);
    tokio::pin!(to_server, to_herald);
    tokio::select! {
        _ = &mut to_server => { let _ = tokio::time::timeout(DRAIN_LIMIT, to_herald).await; }
        _ = &mut to_herald => { let _ = tokio::time::timeout(DRAIN_LIMIT, to_server).await; }
    }
}

/// Forwards `from` to `to` until `from` ends or a cut; then ends `to`'s
/// stream and reads (and drops) what `from` still sends until it closes,
/// so that closing never resets the connection under unread bytes.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    direction: Direction,
    state: &Mutex<State>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buffer[..n];
        let cut = find_cut(state, direction, &tail, chunk);
        let forward = cut.unwrap_or(n);
        if to.write_all(&chunk[..forward]).await.is_err() {
            break;
        }
        if cut.is_some() {
            break;
        }
        tail.extend_from_slice(chunk);
        let keep = tail.len().saturating_sub(TAIL);
        tail.drain(..keep);
    }
    let _ = to.shutdown().await;
    while matches!(from.read(&mut buffer).await, Ok(n) if n > 0) {}
}

/// Where in `chunk` to cut, if the armed cut falls in it: halfway through
/// the start tag of the stanza that matched (never before `chunk`, whose
/// predecessors were forwarded already).
fn find_cut(
    state: &Mutex<State>,
    direction: Direction,
    tail: &[u8],
    chunk: &[u8],
) -> Option<usize> {
    let mut state = state.lock().unwrap();
    let armed = state.armed.as_mut().filter(|a| a.direction == direction)?;
    // Only as much of the tail as cannot hold a whole match: a match
    // is counted in the read where it ends.
    let carried = &tail[tail.len().saturating_sub(armed.pattern.len() - 1)..];
    let text = [carried, chunk].concat();
    let mut from = 0;
    let start = loop {
        let at = from + find(&text[from..], &armed.pattern)?;
        if armed.skip == 0 {
            break at;
        }
        armed.skip -= 1;
        from = at + 1;
    };
    let tag_end = text[start..]
        .iter()
        .position(|&b| b == b'>')
        .map_or(text.len(), |i| start + i);
    let middle = (start + (tag_end - start) / 2).max(start + 1);
    state.armed = None;
    state.cuts += 1;
    Some(middle.max(carried.len()) - carried.len())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
