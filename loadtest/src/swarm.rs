//! The receiving users: N c2s sessions logged in concurrently (a bounded
//! number of logins in flight), each counting and time-stamping every
//! `<message>` it gets.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncReadExt, BufStream};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;

use crate::body;
use herald_testkit::c2s::raw::{self, MessageScanner, Show};
use herald_testkit::server::XmppServer;

/// One message received: its job's sequence number and when it arrived
/// (nanoseconds since the run's epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    pub seq: u64,
    pub at_ns: u64,
}

/// The swarm's users, logged in. Dropping it disconnects them all.
pub struct Swarm {
    tasks: Vec<JoinHandle<Vec<Receipt>>>,
    stop: watch::Sender<bool>,
    counters: Arc<Counters>,
}

pub struct Counters {
    /// Messages received that carry a sequence number.
    pub received: AtomicU64,
    /// Messages received without one (not from the load test).
    pub foreign: AtomicU64,
    /// The sequence number [`Swarm::watch`] looks out for ([`u64::MAX`]:
    /// none), and when a message of it first arrived (0: not yet).
    watched: AtomicU64,
    watched_at_ns: AtomicU64,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            received: AtomicU64::new(0),
            foreign: AtomicU64::new(0),
            watched: AtomicU64::new(u64::MAX),
            watched_at_ns: AtomicU64::new(0),
        }
    }
}

impl Counters {
    /// When the first message of the watched job arrived (nanoseconds
    /// since the run's epoch), if one has.
    pub fn watched_at_ns(&self) -> Option<u64> {
        Some(self.watched_at_ns.load(Ordering::Relaxed)).filter(|&at| at > 0)
    }
}

/// Where and as whom the swarm logs in.
pub struct Logins<'a> {
    pub server: &'a dyn XmppServer,
    /// The c2s listeners (a cluster's nodes) the users log in to, in turn.
    pub c2s_addrs: Vec<String>,
    /// (user, initial show), one per swarm user.
    pub users: Vec<(String, Show)>,
    pub in_flight: usize,
}

impl<'a> Logins<'a> {
    /// Every one of `users` logs in available.
    pub fn available(server: &'a dyn XmppServer, users: &[String], in_flight: usize) -> Self {
        Logins {
            server,
            c2s_addrs: vec![server.c2s_addr()],
            users: users.iter().map(|u| (u.clone(), Show::Available)).collect(),
            in_flight,
        }
    }
}

impl Swarm {
    /// Logs every user in; returns once all are logged in and have sent
    /// their initial presence, or with the first failure (then all
    /// sessions are closed).
    pub async fn log_in(logins: Logins<'_>, epoch: Instant) -> Result<Swarm, String> {
        let total = logins.users.len();
        let (stop, stop_rx) = watch::channel(false);
        let counters = Arc::new(Counters::default());
        let permits = Arc::new(Semaphore::new(logins.in_flight.max(1)));
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Result<(), String>>();
        let mut tasks = Vec::with_capacity(total);
        let addrs = &logins.c2s_addrs;
        for (index, (user, show)) in logins.users.into_iter().enumerate() {
            let password = logins.server.password(&user).to_string();
            let addr = addrs[index % addrs.len()].clone();
            let domain = logins.server.domain().to_string();
            let permits = Arc::clone(&permits);
            let done = done_tx.clone();
            let stop = stop_rx.clone();
            let counters = Arc::clone(&counters);
            tasks.push(tokio::spawn(async move {
                let session = {
                    let Ok(_permit) = permits.acquire().await else {
                        return Vec::new();
                    };
                    raw::log_in(&addr, &domain, &user, &password, show).await
                };
                match session {
                    Ok(stream) => {
                        let _ = done.send(Ok(()));
                        receive(stream, stop, &counters, epoch).await
                    }
                    Err(e) => {
                        let _ = done.send(Err(e));
                        Vec::new()
                    }
                }
            }));
        }
        drop(done_tx);
        let swarm = Swarm {
            tasks,
            stop,
            counters,
        };
        for _ in 0..total {
            match done_rx.recv().await {
                Some(Ok(())) => {}
                Some(Err(e)) => return Err(format!("swarm login failed: {e}")),
                None => return Err("swarm login tasks ended early".to_string()),
            }
        }
        Ok(swarm)
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// From now on, notes when the first message of job `seq` arrives at
    /// any user ([`Counters::watched_at_ns`]), as it arrives.
    pub fn watch(&self, seq: u64) {
        self.counters.watched_at_ns.store(0, Ordering::Relaxed);
        self.counters.watched.store(seq, Ordering::Relaxed);
    }

    /// Disconnects every user; returns each user's receipts, in login order.
    pub async fn finish(self) -> Vec<Vec<Receipt>> {
        let _ = self.stop.send(true);
        let mut all = Vec::with_capacity(self.tasks.len());
        for task in self.tasks {
            all.push(task.await.unwrap_or_default());
        }
        all
    }
}

async fn receive(
    mut stream: BufStream<TcpStream>,
    mut stop: watch::Receiver<bool>,
    counters: &Counters,
    epoch: Instant,
) -> Vec<Receipt> {
    let mut scanner = MessageScanner::default();
    let mut receipts = Vec::new();
    let mut on_bytes = |bytes: &[u8], scanner: &mut MessageScanner| {
        let now = epoch.elapsed().as_nanos() as u64;
        scanner.feed(bytes, |stanza| match body::decode(stanza) {
            Some(seq) => {
                receipts.push(Receipt { seq, at_ns: now });
                counters.received.fetch_add(1, Ordering::Relaxed);
                if seq == counters.watched.load(Ordering::Relaxed) {
                    let _ = counters.watched_at_ns.compare_exchange(
                        0,
                        now.max(1),
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                }
            }
            None => {
                counters.foreign.fetch_add(1, Ordering::Relaxed);
            }
        });
    };
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => on_bytes(&buf[..n], &mut scanner),
            },
            // A stop signal, or the Swarm was dropped.
            _ = stop.changed() => break,
        }
    }
    receipts
}
