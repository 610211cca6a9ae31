//! What Herald costs per job and per message with no server, broker or
//! store: the core drives every job through its whole life (delivered,
//! fanned out, read, committed, reported, acknowledged) and every stanza it
//! writes is encoded into bytes as Herald's XML stream encodes them. With
//! no I/O the count is the logic's own, repeatable under callgrind.
//!
//! ```text
//! core_cost jobs N     N one-recipient jobs, in bursts of 64 under one barrier
//! core_cost fanout N   one job to N recipients (N <= 10,000)
//! core_cost window N   one job to N offline users with a window; then
//!                      each comes online (a presence change sends them
//!                      the message late); prints the memory the open
//!                      window holds and the time per presence change,
//!                      beside N presence changes of users in no window
//! core_cost reconnect N  N streams lost and new: each forgets the 10,000
//!                      users' presence and probes every subscriber
//! ```
//!
//! Both start from 10,000 users online. `.ci/cost` runs each mode twice
//! under callgrind and divides the difference of the totals by the
//! difference of N: instructions per job and per message, which it checks
//! against `benches/instructions.toml`.

use std::time::Instant;

use herald::broadcast::Broadcast;
use herald::config::Secret;
use herald::core::{Core, Delivery, Input, JobId, Lane, Output, Restored};
use herald::metrics::Metrics;
use herald::xmpp::wire::{Outgoing, StanzaEncoder};
use herald::Config;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::presence::{Presence, Type as PresenceType};

const USERS: u64 = 10_000;
const BURST: u64 = 64;
const BODY: &str = "Database primary unreachable.";

/// A core with its streams up and `USERS` users online, and a sink that
/// plays server, store and broker at once.
struct Bench {
    core: Core<Broadcast>,
    encoder: StanzaEncoder,
    /// What a socket would take: cleared after each stanza, counted.
    written: Vec<u8>,
    bytes: usize,
    /// The highest delivery tag acknowledged (all jobs here come on one
    /// connection, in tag order).
    acked: u64,
    now: Instant,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let n: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    let mut bench = Bench::new();
    let started = Instant::now();
    match mode.as_str() {
        "jobs" => bench.jobs(n),
        "fanout" => bench.fanout(n.min(USERS)),
        "window" => bench.window(n),
        "reconnect" => bench.reconnect(n),
        _ => {
            eprintln!(
                "usage: core_cost jobs N | core_cost fanout N | core_cost window N | core_cost reconnect N"
            );
            std::process::exit(2);
        }
    }
    println!(
        "{mode} {n}: {:?}, {} bytes written",
        started.elapsed(),
        bench.bytes
    );
    // Not dropped: freeing what the run built (the ledger of completed
    // jobs above all) is no work Herald does per job, and what it costs
    // moves with the heap's layout (glibc consolidates free blocks as it
    // goes), by 1,800 instructions per job between two builds that do
    // the same work.
    std::mem::forget(bench);
}

impl Bench {
    fn new() -> Bench {
        let mut config = Config::default();
        config.xmpp.domain = "broadcast.localhost".into();
        config.xmpp.secret = Some(Secret::new("secret"));
        // For the window's million recipients, whom nobody probes.
        config.broadcast.max_recipients = 1_000_000;
        config.xmpp.unknown_probe_ttl_secs = 0;
        let settings = config.settings().expect("valid settings");
        let handler = Broadcast::new(settings.limits, false, settings.checkpoint_every);
        let now = Instant::now();
        let core = Core::new(
            settings.core,
            handler,
            Restored::default(),
            Metrics::new(),
            (now, std::time::SystemTime::now()),
        );
        let mut bench = Bench {
            core,
            encoder: StanzaEncoder::default(),
            written: Vec::new(),
            bytes: 0,
            acked: 0,
            now,
        };
        bench.core.handle(Input::StreamUp, now);
        bench.core.handle(Input::BrokerUp { generation: 1 }, now);
        for user in 0..USERS {
            let available = Presence::new(PresenceType::None)
                .with_from(Jid::new(&format!("u{user}@localhost/phone")).unwrap())
                .with_to(Jid::new("herald@broadcast.localhost").unwrap());
            bench.core.handle(Input::Stanza(available.into()), now);
        }
        bench.carry_out();
        bench.now += std::time::Duration::from_secs(1);
        bench.core.handle_timeout(bench.now);
        bench.carry_out();
        assert!(bench.core.takes_jobs(), "presence rebuilt");
        bench.bytes = 0;
        bench
    }

    fn jobs(&mut self, jobs: u64) {
        let mut tag = 0;
        while tag < jobs {
            for _ in 0..BURST.min(jobs - tag) {
                tag += 1;
                let recipient = format!("u{}@localhost", tag % USERS);
                self.deliver(tag, &format!("job-{tag}"), &[recipient]);
            }
            self.carry_out();
        }
        // A count of work that did not happen would pass any gate.
        assert_eq!(self.acked, jobs, "every job acknowledged");
    }

    fn reconnect(&mut self, times: u64) {
        // Nobody answers the probes: the cost is the core's and the
        // encoder's, per subscriber.
        for _ in 0..times {
            self.core.handle(Input::StreamLost, self.now);
            self.carry_out();
            self.core.handle(Input::StreamUp, self.now);
            self.carry_out();
        }
    }

    fn fanout(&mut self, recipients: u64) {
        let to: Vec<String> = (0..recipients).map(|u| format!("u{u}@localhost")).collect();
        self.deliver(1, "fanout", &to);
        self.carry_out();
        assert_eq!(self.acked, 1, "the job acknowledged");
    }

    fn window(&mut self, recipients: u64) {
        let users = |prefix: &str| -> Vec<String> {
            (0..recipients)
                .map(|u| format!("{prefix}{u}@localhost"))
                .collect()
        };
        let before = rss_kib();
        let payload = serde_json::json!({"id": "window", "to": users("w"), "body": BODY, "deliver_within_secs": 3600});
        self.deliver_payload(1, payload.to_string().into_bytes());
        self.carry_out();
        let open = rss_kib();
        println!(
            "window of {recipients} waiting: RSS {} MiB over before the job ({} bytes a recipient)",
            (open - before) / 1024,
            (open - before) * 1024 / recipients.max(1)
        );
        for (label, prefix) in [("in no window", "x"), ("waiting", "w")] {
            let started = Instant::now();
            for user in users(prefix) {
                let available = Presence::new(PresenceType::None)
                    .with_from(Jid::new(&format!("{user}/phone")).unwrap())
                    .with_to(Jid::new("herald@broadcast.localhost").unwrap());
                self.core.handle(Input::Stanza(available.into()), self.now);
                self.carry_out();
            }
            let each = started.elapsed() / recipients.max(1) as u32;
            println!("{recipients} users {label} come online: {each:?} each (with their message, if any, written and read)");
        }
    }

    fn deliver(&mut self, tag: u64, id: &str, to: &[String]) {
        // Written from a struct, not built as a `serde_json::Value` first:
        // what the bench itself spends is counted with Herald's work.
        let job = JobJson { id, to, body: BODY };
        self.deliver_payload(tag, serde_json::to_vec(&job).expect("a job's JSON"));
    }

    fn deliver_payload(&mut self, tag: u64, payload: Vec<u8>) {
        let delivery = Delivery {
            id: JobId {
                generation: 1,
                lane: Lane::Normal,
                tag,
            },
            payload,
            redelivered: false,
            age: None,
            // No job here has a deadline, and the window's is measured
            // from this reading: any reading of the calendar does.
            received_at: std::time::UNIX_EPOCH,
            user_id: None,
        };
        self.core.handle(Input::Delivery(delivery), self.now);
    }

    /// Every ping answered, batch committed and publish confirmed, every
    /// stanza encoded, until the core has nothing more to do.
    fn carry_out(&mut self) {
        // A stream queue that is always empty: every job goes in one slice.
        while let Some(output) = self.core.poll_output(usize::MAX) {
            let answer = match &output {
                Output::Ping(Iq::Get { id, .. }) => Some(Input::Stanza(
                    Iq::Result {
                        from: Some(Jid::new("localhost").unwrap()),
                        to: Some(Jid::new("broadcast.localhost").unwrap()),
                        id: id.clone(),
                        payload: None,
                    }
                    .into(),
                )),
                Output::Commit(batch) => Some(Input::Committed { batch: batch.id }),
                Output::Publish(publish) => publish.id.map(|id| Input::Published { id }),
                Output::Ack { job, .. } => {
                    self.acked = self.acked.max(job.tag);
                    None
                }
                _ => None,
            };
            let outgoing = match output {
                Output::Stanza(stanza) => Some(Outgoing::Stanza(Box::new(stanza))),
                Output::Ping(ping) => Some(Outgoing::Stanza(Box::new(ping.into()))),
                Output::Message { template, to } => Some(Outgoing::Message { template, to }),
                _ => None,
            };
            if let Some(outgoing) = outgoing {
                self.encoder
                    .encode(&outgoing, &mut self.written)
                    .expect("serializable");
                self.bytes += self.written.len();
                self.written.clear();
            }
            if let Some(answer) = answer {
                self.core.handle(answer, self.now);
            }
        }
    }
}

/// This process's resident memory, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A job as a producer writes it.
#[derive(serde::Serialize)]
struct JobJson<'a> {
    id: &'a str,
    to: &'a [String],
    body: &'a str,
}
