//! One simulated world: Herald's core between a simulated XMPP server, a
//! simulated broker and a simulated store, all driven by one seeded RNG
//! on simulated time. Each step does one thing at random (a fault among
//! them), carries out what the core asked, and checks the guarantees.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use herald::broadcast::Broadcast;
use herald::core::{Core, Destination, Input, Lane, Output, Restored};
use herald::metrics::Metrics;
use herald::Config;
use xmpp_parsers::jid::BareJid;

use super::broker::{Broker, Message};
use super::cancels::Cancels;
use super::checks::Ledger;
use super::groups::{self, Groups};
use super::receipts;
use super::server::{self, Server};
use super::store::Store;
use herald_testkit::draw::Draw;

mod faults;

/// Steps with faults; then the world calms down until every job is done.
const CHAOS_STEPS: usize = 250;
const CALM_STEPS: usize = 4_000;
const PREFETCH: usize = 6;
const URGENT_PREFETCH: usize = 2;

pub struct World {
    pub rng: Draw,
    /// Control requests' own chance: each seed's jobs live the world they
    /// did before requests existed, and any effect on them would show.
    requests: Draw,
    /// Groups' own chance (their members, and which jobs name them), for
    /// the same reason.
    audience: Draw,
    groups: Groups,
    /// Cancel requests, from a chance of their own.
    cancels: Cancels,
    /// How many stanzas Herald's stream queue takes before a job's next
    /// slice waits for the server to read (drawn from its own chance, so
    /// that each seed's jobs stay as they were).
    queue_capacity: usize,
    /// Which jobs go to the urgent queue (a world's own choice, so that
    /// each seed's jobs stay as they were).
    urgent_offset: usize,
    pub now: Instant,
    core: Option<Core<Broadcast>>,
    config: Config,
    pub server: Server,
    pub broker: Broker,
    pub store: Store,
    pub ledger: Ledger,
    calm: bool,
    /// When the stream and the broker connection come back, if down.
    stream_back_at: Option<Instant>,
    broker_back_at: Option<Instant>,
    pub trace: Vec<String>,
}

impl World {
    pub fn new(seed: u64) -> World {
        let mut rng = Draw::new(seed);
        let now = Instant::now();
        let mut config = Config::default();
        config.xmpp.domain = "broadcast.localhost".into();
        config.xmpp.secret = Some(herald::config::Secret::new("secret"));
        config.xmpp.probe_settle_ms = 50;
        config.broadcast.checkpoint_every = 1 + rng.below(3) as usize;
        config.store.remember_jobs = 1_000;
        config.broadcast.receipts_window_secs = receipts::WINDOW_SECS;
        let mut store = Store::new(config.store.remember_jobs);
        let contact = BareJid::new(server::CONTACT).unwrap();
        // Herald may know some users from an earlier run; the others are
        // strangers to it.
        for user in 0..server::USERS {
            if rng.chance(500) {
                store.subscribe(&server::user_jid(user), &contact);
            }
        }
        let mut audience = Draw::new(seed ^ 0x6A_0B_5C_02);
        let groups = Groups::new(&mut audience, &mut store);
        let mut server = Server::new(now, seed);
        server.ping_errors = rng.below(100);
        let mut world = World {
            now,
            core: None,
            config,
            server,
            broker: Broker::new([URGENT_PREFETCH, PREFETCH]),
            ledger: Ledger::new(&mut rng),
            store,
            rng,
            requests: Draw::new(seed ^ 0xC0_4E_7A_01),
            audience,
            groups,
            cancels: Cancels::new(seed),
            queue_capacity: 1 + Draw::new(seed ^ 0x51_1C_E5).below(8) as usize,
            urgent_offset: Draw::new(seed ^ 0x0A_17_E5).below(8) as usize,
            calm: false,
            stream_back_at: Some(now),
            broker_back_at: Some(now),
            trace: Vec::new(),
        };
        world.start_core();
        world
    }

    fn start_core(&mut self) {
        let settings = self.config.settings().unwrap();
        let handler = Broadcast::new(settings.limits, true, settings.checkpoint_every);
        let restored: Restored = self.store.restore();
        let clocks = (self.now, self.wall_clock());
        self.core = Some(Core::new(
            settings.core,
            handler,
            restored,
            Metrics::new(),
            clocks,
        ));
    }

    fn core(&mut self) -> &mut Core<Broadcast> {
        self.core.as_mut().expect("a core between crashes")
    }

    fn input(&mut self, input: Input) -> Result<(), String> {
        self.trace
            .push(format!("{:>6} ms  {}", self.elapsed(), describe(&input)));
        let now = self.now;
        self.core().handle(input, now);
        self.carry_out()
    }

    fn elapsed(&self) -> u128 {
        self.now.duration_since(self.ledger.start).as_millis()
    }

    /// The calendar on simulated time: every world starts at
    /// 2026-12-06T12:00:00Z.
    fn wall_clock(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_796_558_400) + self.now.duration_since(self.ledger.start)
    }

    /// Runs the world to its end; `Err` says which guarantee broke.
    pub fn run(&mut self) -> Result<usize, String> {
        for step in 0..CHAOS_STEPS + CALM_STEPS {
            self.calm = step >= CHAOS_STEPS;
            self.step()?;
            if self.calm && self.is_done() {
                self.ledger.check_end(&self.server)?;
                self.take_answers()?;
                self.cancels.check_end()?;
                return self.broker.all_answered().map(|()| step);
            }
        }
        Err(format!(
            "not every job was settled after {} calm steps: {} queued or unacknowledged",
            CALM_STEPS,
            self.broker.pending().count()
        ))
    }

    fn is_done(&self) -> bool {
        self.ledger.all_published()
            && self.ledger.windows_closed()
            && self.broker.pending().next().is_none()
            && self.broker.in_flight.is_empty()
            && !self.broker.awaits_answers()
    }

    fn step(&mut self) -> Result<(), String> {
        self.now += self.rng.millis(if self.calm { 200 } else { 40 });
        self.reconnect()?;
        let timeout = self.core().poll_timeout();
        if timeout.is_some_and(|at| at <= self.now) {
            let now = self.now;
            self.trace
                .push(format!("{:>6} ms  timeout", self.elapsed()));
            self.core().handle_timeout(now);
            self.carry_out()?;
        }
        // Herald reads its socket whenever something is there.
        self.hand_over_from_server()?;
        if self.requests.chance(50) {
            self.request()?;
        }
        if let Some(payload) = self.cancels.request() {
            if let Some(request) = self.broker.request(self.wall_clock(), payload, true) {
                self.input(Input::Request(request))?;
            }
        }
        let fault = !self.calm && self.rng.chance(60);
        if fault {
            return self.fault();
        }
        match self.rng.below(10) {
            0..=3 => {
                let n = 1 + self.rng.below(8) as usize;
                let now = self.now;
                self.server.read(n, now, &mut self.rng);
                Ok(())
            }
            4 => self.deliver(),
            5 => self.broker_answers(),
            6 => self.store_answers(),
            7 if !self.calm => {
                let now = self.now;
                self.server.churn(&mut self.rng, now);
                Ok(())
            }
            8 => {
                let (rng, audience) = (&mut self.rng, &mut self.audience);
                let addressed = &self.groups.addressed;
                if let Some((job, payload)) =
                    self.ledger.publish(rng, audience, addressed, self.now)
                {
                    // One job in eight to the urgent queue, every copy of it
                    // (docs/jobs.md: copies of a job in both queues may
                    // overtake each other).
                    let id = self.ledger.jobs[job]
                        .id
                        .bytes()
                        .map(usize::from)
                        .sum::<usize>();
                    let lane = if (id + self.urgent_offset).is_multiple_of(8) {
                        Lane::Urgent
                    } else {
                        Lane::Normal
                    };
                    self.broker.queues[lane.index()].push_back(Message {
                        job,
                        payload,
                        redelivered: false,
                    });
                }
                Ok(())
            }
            _ => {
                // Jump to the core's next deadline.
                if let Some(at) = self.core().poll_timeout() {
                    self.now = self.now.max(at);
                }
                Ok(())
            }
        }
    }

    fn hand_over_from_server(&mut self) -> Result<(), String> {
        while let Some(stanza) = self.server.next_to_herald(self.now) {
            self.input(Input::Stanza(stanza))?;
        }
        Ok(())
    }

    /// The shell hands jobs over only while the core takes them.
    fn deliver(&mut self) -> Result<(), String> {
        for _ in 0..1 + self.rng.below(4) {
            let takes = [self.core().phase().takes_jobs(), self.core().takes_jobs()];
            let Some(delivery) = self.broker.deliver(self.wall_clock(), takes) else {
                break;
            };
            self.input(Input::Delivery(delivery))?;
        }
        Ok(())
    }

    fn take_answers(&mut self) -> Result<(), String> {
        while let Some(answer) = self.broker.answers.pop_front() {
            self.ledger
                .on_publish_taken(&answer, &self.store, self.now)?;
            self.cancels.on_publish_taken(&answer)?;
            self.broker.answered(&answer)?;
        }
        Ok(())
    }

    fn broker_answers(&mut self) -> Result<(), String> {
        self.take_answers()?;
        for _ in 0..1 + self.rng.below(4) {
            let Some(publish) = self.broker.take_publish() else {
                break;
            };
            self.trace.push(format!(
                "{:>6} ms  broker took {:?} {:?} {}",
                self.elapsed(),
                publish.id,
                publish.destination,
                short(&String::from_utf8_lossy(&publish.payload))
            ));
            self.ledger
                .on_publish_taken(&publish, &self.store, self.now)?;
            self.cancels.on_publish_taken(&publish)?;
            if let Destination::DeadLetter { .. } = publish.destination {
                if let Some((job, _)) = self.broker.dead.last() {
                    self.ledger.on_dead_letter(*job);
                }
            }
            if let Some(id) = publish.id {
                self.input(Input::Published { id })?;
            }
        }
        Ok(())
    }

    /// An application asks Herald something, now and then without a
    /// reply_to or with a request Herald cannot read; half the requests
    /// change or read groups.
    fn request(&mut self) -> Result<(), String> {
        let (payload, effect) = match self.requests.below(10) {
            0 => (br#"{"op":"status"}"#.to_vec(), groups::Effect::None),
            1 => (
                br#"{"op":"presence","users":["u1@localhost","u2@localhost/r"]}"#.to_vec(),
                groups::Effect::None,
            ),
            2 => (
                br#"{"op":"online","limit":2}"#.to_vec(),
                groups::Effect::None,
            ),
            3 => (br#"{"op":"cancel"}"#.to_vec(), groups::Effect::None),
            4 => (b"not json".to_vec(), groups::Effect::None),
            _ => Groups::request(&mut self.requests),
        };
        let reply_to = self.requests.chance(900);
        let Some(request) = self.broker.request(self.wall_clock(), payload, reply_to) else {
            return Ok(());
        };
        if reply_to {
            self.groups.took(request.id, effect);
        }
        self.input(Input::Request(request))
    }

    fn store_answers(&mut self) -> Result<(), String> {
        if let Some(batch) = self.store.commit() {
            self.input(Input::Committed { batch: batch.id })?;
        }
        Ok(())
    }

    /// Carries out what the core asked, as the shell would.
    fn carry_out(&mut self) -> Result<(), String> {
        loop {
            let unread = self.server.stream.as_ref().map_or(0, |s| s.unread.len());
            let room = self.queue_capacity.saturating_sub(unread);
            let Some(output) = self.core().poll_output(room) else {
                break;
            };
            match output {
                Output::Stanza(stanza) => self.server.write(stanza)?,
                Output::Ping(ping) => self.server.write(ping.into())?,
                Output::Message { template, to } => {
                    self.server.write(template.to_message(&to).into())?
                }
                Output::Publish(publish) => {
                    self.groups.on_publish(&publish)?;
                    self.broker.publish(publish)
                }
                Output::Ack { job, multiple } => {
                    self.trace.push(format!(
                        "{:>6} ms  ack {job:?} multiple: {multiple}",
                        self.elapsed()
                    ));
                    let acked = self.broker.ack(job, multiple)?;
                    self.ledger.on_acked(&acked, &self.store, &self.broker)?;
                }
                Output::Requeue { job } => {
                    self.trace
                        .push(format!("{:>6} ms  requeue {job:?}", self.elapsed()));
                    self.broker.requeue(job)?
                }
                Output::Commit(batch) => self.store.begin(batch)?,
            }
        }
        Ok(())
    }
}

fn describe(input: &Input) -> String {
    match input {
        Input::Stanza(stanza) => format!("stanza {}", short(&format!("{stanza:?}"))),
        Input::Delivery(d) => format!(
            "delivery {:?} {}{}",
            d.id,
            short(&String::from_utf8_lossy(&d.payload)),
            if d.redelivered { " (redelivered)" } else { "" }
        ),
        other => short(&format!("{other:?}")),
    }
}

fn short(text: &str) -> String {
    text.chars().take(160).collect()
}
