//! The XMPP server's own ceiling: how fast it delivers a component's
//! messages to logged-in users when the component costs nothing. A raw
//! XEP-0114 client writes table1's messages, built beforehand, as fast as
//! the server reads them, and the swarm counts what arrives. Herald's
//! scenario runs are read against this (see docs/performance.md); the
//! server-side counterpart of `ceiling`, which takes the server out.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::Args;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::body;
use crate::churn::Churn;
use crate::cpu::CpuWindows;
use crate::procstat;
use crate::report::{tally, RunResult};
use crate::run::wait_for;
use crate::servers::{Population, Server, ServerKind};
use crate::swarm::{Logins, Swarm};
use herald_testkit::c2s::raw::RESOURCE;
use herald_testkit::server::XmppServer;

/// Messages handed to the socket per write: small enough that the write
/// time stamped on each message is close to when the server could read it.
const MESSAGES_PER_WRITE: usize = 64;

#[derive(Args, Debug)]
pub struct ServerCeilingArgs {
    #[arg(long, value_enum, default_value = "prosody")]
    server: ServerKind,
    /// Logged-in users; each gets one message.
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    /// Users logging in and out meanwhile (the presence flood).
    #[arg(long, default_value_t = 0)]
    churn: usize,
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    #[arg(long, default_value_t = 200)]
    logins_in_flight: usize,
    /// Seconds of churn before the first message.
    #[arg(long, default_value_t = 3.0)]
    churn_warmup_secs: f64,
    /// Give up waiting for messages after this many seconds without one.
    #[arg(long, default_value_t = 40.0)]
    idle_timeout_secs: f64,
    /// File the JSON lines are appended to.
    #[arg(long, default_value = "loadtest-results.jsonl")]
    pub results: PathBuf,
}

impl ServerCeilingArgs {
    /// One run without churn, as another scenario measures it beside its
    /// own (`groups`).
    pub fn once(
        server: ServerKind,
        users: usize,
        logins_in_flight: usize,
        idle_timeout_secs: f64,
        results: PathBuf,
    ) -> ServerCeilingArgs {
        ServerCeilingArgs {
            server,
            users,
            churn: 0,
            repeat: 1,
            logins_in_flight,
            churn_warmup_secs: 0.0,
            idle_timeout_secs,
            results,
        }
    }
}

/// One run per repetition; results have scenario `server-ceiling` and
/// component `raw`.
pub async fn run(args: &ServerCeilingArgs) -> Vec<RunResult> {
    let mut results = Vec::new();
    for run in 1..=args.repeat {
        eprintln!(
            "server-ceiling on {}: run {run}/{}, {} users, {} churning",
            args.server.name(),
            args.repeat,
            args.users,
            args.churn
        );
        let mut result = RunResult::new("server-ceiling", args.server, "raw", run);
        result.users = args.users;
        result.churn = args.churn;
        result.jobs = args.users as u64;
        result.recipients_per_job = 1;
        result.expected = args.users as u64;
        if let Err(e) = measure(args, &mut result).await {
            result.error = Some(e);
        }
        results.push(result);
    }
    results
}

async fn measure(args: &ServerCeilingArgs, result: &mut RunResult) -> Result<(), String> {
    let epoch = Instant::now();
    let population = Population::new(args.users, args.churn);
    let mut server = Server::launch(args.server, &population).await?;
    let outcome = drive(args, &server, &population, epoch, result).await;
    server.stop();
    outcome
}

async fn drive(
    args: &ServerCeilingArgs,
    server: &Server,
    population: &Population,
    epoch: Instant,
    result: &mut RunResult,
) -> Result<(), String> {
    let api = server.api();
    let swarm = Swarm::log_in(
        Logins::available(api, &population.users, args.logins_in_flight),
        epoch,
    )
    .await?;
    let mut component = RawComponent::connect(api).await?;
    if let Some(pid) = server.pid() {
        wait_until_idle(pid).await;
    }
    let idle_timeout = Duration::from_secs_f64(args.idle_timeout_secs);
    let churn = (!population.churners.is_empty()).then(|| {
        let warmup = Duration::from_secs_f64(args.churn_warmup_secs);
        Churn::start(
            api,
            &population.churners,
            args.logins_in_flight,
            tokio::time::Instant::now() + warmup + idle_timeout * 4,
        )
    });
    if churn.is_some() {
        tokio::time::sleep(Duration::from_secs_f64(args.churn_warmup_secs)).await;
    }

    let messages: Vec<Vec<u8>> = population
        .users
        .iter()
        .enumerate()
        .map(|(seq, user)| message(seq as u64, &format!("{}/{RESOURCE}", api.jid(user)), api))
        .collect();
    let cpu = CpuWindows::start(None, &server.pids(), None);
    let written = component.write_all(&messages, epoch).await?;
    wait_for(
        "messages",
        result.expected,
        || swarm.counters().received.load(Ordering::Relaxed),
        idle_timeout,
        idle_timeout * 4,
    )
    .await;
    cpu.record(result);
    if let Some(churn) = churn {
        result.churn_cycles = churn.stop().await;
    }
    component.check_open()?;
    let receipts = swarm.finish().await;
    let t = tally(&written, None, &receipts, &[]);
    result.record(&t);
    Ok(())
}

/// Waits (at most 30 s) until the server uses less than a tenth of a core
/// over half a second: just after thousands of logins it is still busy
/// with them, and that work would count against its ceiling.
async fn wait_until_idle(pid: u32) {
    const WINDOW: Duration = Duration::from_millis(500);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let Some(before) = procstat::cpu_seconds(pid) else {
            return;
        };
        tokio::time::sleep(WINDOW).await;
        let Some(after) = procstat::cpu_seconds(pid) else {
            return;
        };
        if after - before < 0.1 * WINDOW.as_secs_f64() {
            return;
        }
    }
}

/// A message to `to` carrying sequence number `seq`, shaped like Herald's:
/// to a full JID (a bare JID costs Prosody about twice as much: it picks
/// the resource itself).
fn message(seq: u64, to: &str, server: &dyn XmppServer) -> Vec<u8> {
    format!(
        "<message from='herald@{from}' to='{to}' type='chat' id='raw-{seq}'>\
         <body>{body}</body></message>",
        from = server.component_domain(),
        body = body::encode(seq)
    )
    .into_bytes()
}

/// A component that costs nothing: the handshake, then bytes as fast as
/// the server reads them. What the server sends it (users' presence) is
/// read and dropped, so the server never blocks on it.
struct RawComponent {
    writer: OwnedWriteHalf,
    reader: JoinHandle<Result<(), String>>,
}

impl RawComponent {
    async fn connect(server: &dyn XmppServer) -> Result<RawComponent, String> {
        let addr = server.component_addr();
        let stream = TcpStream::connect(&addr)
            .await
            .map_err(|e| format!("raw component: connect {addr}: {e}"))?;
        stream.set_nodelay(true).ok();
        let (mut reader, mut writer) = stream.into_split();
        let header = format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
             xmlns:stream='http://etherx.jabber.org/streams' to='{}'>",
            server.component_domain()
        );
        write(&mut writer, header.as_bytes()).await?;
        let mut seen = Vec::new();
        let stream_id = loop {
            read_more(&mut reader, &mut seen).await?;
            if let Some(id) = stream_id(&seen) {
                break id;
            }
        };
        let mut hasher = Sha1::new();
        hasher.update(stream_id.as_bytes());
        hasher.update(server.component_secret().as_bytes());
        let digest: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        write(
            &mut writer,
            format!("<handshake>{digest}</handshake>").as_bytes(),
        )
        .await?;
        while !handshake_done(&seen) {
            read_more(&mut reader, &mut seen).await?;
        }
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) => return Err("the server closed the component stream".to_string()),
                    Ok(n) if contains(&buf[..n], b"stream:error") => {
                        return Err(format!(
                            "the server ended the component stream: {}",
                            String::from_utf8_lossy(&buf[..n])
                        ))
                    }
                    Ok(_) => {}
                    Err(e) => return Err(format!("component stream: {e}")),
                }
            }
        });
        Ok(RawComponent { writer, reader })
    }

    /// Writes every message in order; returns each one's write time in
    /// nanoseconds since `epoch`.
    async fn write_all(
        &mut self,
        messages: &[Vec<u8>],
        epoch: Instant,
    ) -> Result<Vec<u64>, String> {
        let mut written = Vec::with_capacity(messages.len());
        for chunk in messages.chunks(MESSAGES_PER_WRITE) {
            let at = epoch.elapsed().as_nanos() as u64;
            write(&mut self.writer, &chunk.concat()).await?;
            written.extend(std::iter::repeat_n(at, chunk.len()));
        }
        Ok(written)
    }

    /// Fails when the server ended the stream meanwhile.
    fn check_open(&mut self) -> Result<(), String> {
        if self.reader.is_finished() {
            return Err("the server ended the component stream during the run".into());
        }
        Ok(())
    }
}

impl Drop for RawComponent {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

async fn write(writer: &mut OwnedWriteHalf, bytes: &[u8]) -> Result<(), String> {
    writer
        .write_all(bytes)
        .await
        .map_err(|e| format!("raw component: write: {e}"))
}

async fn read_more(
    reader: &mut tokio::net::tcp::OwnedReadHalf,
    seen: &mut Vec<u8>,
) -> Result<(), String> {
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), reader.read(&mut buf))
        .await
        .map_err(|_| "raw component: the server did not answer the handshake".to_string())?
        .map_err(|e| format!("raw component: read: {e}"))?;
    if n == 0 {
        return Err(format!(
            "raw component: the server closed the stream: {}",
            String::from_utf8_lossy(seen)
        ));
    }
    seen.extend_from_slice(&buf[..n]);
    if contains(seen, b"stream:error") {
        return Err(format!(
            "raw component: refused: {}",
            String::from_utf8_lossy(seen)
        ));
    }
    Ok(())
}

/// The `id` of the server's stream header, once the header is complete.
fn stream_id(seen: &[u8]) -> Option<String> {
    let start = memchr::memmem::find(seen, b"<stream:stream")?;
    let end = start + memchr::memchr(b'>', &seen[start..])?;
    let header = std::str::from_utf8(&seen[start..end]).ok()?;
    let at = header.find(" id=")? + 4;
    let quote = header[at..].chars().next()?;
    let value = &header[at + 1..];
    Some(value[..value.find(quote)?].to_string())
}

/// The server accepted the handshake: `<handshake/>` or an empty pair.
fn handshake_done(seen: &[u8]) -> bool {
    contains(seen, b"<handshake/>") || contains(seen, b"<handshake></handshake>")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(haystack, needle).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_stream_id_in_either_quotes() {
        let header = b"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
            xmlns:stream='http://etherx.jabber.org/streams' id='abc123' from='broadcast.localhost'>";
        assert_eq!(stream_id(header).as_deref(), Some("abc123"));
        let header = br#"<stream:stream from="x" id="q-9">"#;
        assert_eq!(stream_id(header).as_deref(), Some("q-9"));
        assert_eq!(stream_id(b"<stream:stream id='abc"), None);
        assert_eq!(stream_id(b"<stream:stream from='x'>"), None);
    }

    #[test]
    fn handshake_accepted_in_both_forms() {
        assert!(handshake_done(b"<handshake/>"));
        assert!(handshake_done(
            b"<stream:stream id='x'><handshake></handshake>"
        ));
        assert!(!handshake_done(b"<stream:stream id='x'>"));
    }
}
