//! What Herald's core costs per job, with no server, broker or store: `n`
//! one-recipient jobs driven through their whole life (delivered, fanned
//! out, read, committed, reported, acknowledged) in bursts of 64 under one
//! barrier, as the shell takes them. Because the core does no I/O, the
//! count is the logic's own, repeatable under callgrind:
//!
//! ```text
//! cargo build --release --example core_cost
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/core_cost 0
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/core_cost 10000
//! ```
//!
//! The difference of the two totals ("Collected"), divided by 10,000, is
//! the core's instructions per one-recipient job.

use std::time::Instant;

use herald::broadcast::Broadcast;
use herald::config::Secret;
use herald::core::{Core, Delivery, Input, JobId, Output, Restored};
use herald::metrics::Metrics;
use herald::Config;
use tokio_xmpp::Stanza;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::presence::{Presence, Type as PresenceType};

const USERS: u64 = 1_000;
const BURST: u64 = 64;

fn main() {
    let jobs: u64 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let mut config = Config::default();
    config.xmpp.domain = "broadcast.localhost".into();
    config.xmpp.secret = Some(Secret::new("secret"));
    let settings = config.settings().expect("valid settings");
    let handler = Broadcast::new(settings.limits, false, settings.checkpoint_every);
    let mut now = Instant::now();
    let mut core = Core::new(
        settings.core,
        handler,
        Restored::default(),
        Metrics::new(),
        now,
    );
    core.handle(Input::StreamUp, now);
    core.handle(Input::BrokerUp { generation: 1 }, now);
    for user in 0..USERS {
        let available = Presence::new(PresenceType::None)
            .with_from(Jid::new(&format!("u{user}@localhost/phone")).unwrap())
            .with_to(Jid::new("herald@broadcast.localhost").unwrap());
        core.handle(Input::Stanza(available.into()), now);
    }
    carry_out(&mut core, now);
    now += std::time::Duration::from_secs(1);
    core.handle_timeout(now);
    assert!(core.takes_jobs(), "presence rebuilt");

    let started = Instant::now();
    let mut tag = 0;
    while tag < jobs {
        let burst = BURST.min(jobs - tag);
        for _ in 0..burst {
            tag += 1;
            let payload = format!(
                r#"{{"id":"job-{tag}","to":["u{}@localhost"],"body":"Database primary unreachable."}}"#,
                tag % USERS
            );
            let delivery = Delivery {
                id: JobId { generation: 1, tag },
                payload: payload.into_bytes(),
                redelivered: false,
                age: None,
            };
            core.handle(Input::Delivery(delivery), now);
        }
        carry_out(&mut core, now);
    }
    let elapsed = started.elapsed();
    println!(
        "{jobs} jobs through the core in {elapsed:?} ({:.2} µs per job)",
        elapsed.as_secs_f64() * 1e6 / jobs.max(1) as f64
    );
}

/// Plays server, store and broker at once: every ping is answered, every
/// batch committed, every publish confirmed, until the core has nothing
/// more to do.
fn carry_out(core: &mut Core<Broadcast>, now: Instant) {
    while let Some(output) = core.poll_output() {
        let answer = match output {
            Output::Stanza(Stanza::Iq(Iq::Get { id, .. })) => Input::Stanza(
                Iq::Result {
                    from: Some(Jid::new("localhost").unwrap()),
                    to: Some(Jid::new("broadcast.localhost").unwrap()),
                    id,
                    payload: None,
                }
                .into(),
            ),
            Output::Commit(batch) => Input::Committed { batch: batch.id },
            Output::Publish(publish) => match publish.id {
                Some(id) => Input::Published { id },
                None => continue,
            },
            Output::Stanza(_) | Output::Ack { .. } | Output::Requeue { .. } => continue,
        };
        core.handle(answer, now);
    }
}
