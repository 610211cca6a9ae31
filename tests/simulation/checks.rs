//! The jobs an application publishes in the simulated world, and the
//! guarantees of docs/reliability.md checked against what the simulated
//! server, broker and store saw:
//!
//! - every recipient of every job is counted once in the job's own report
//!   (a user in `to` and in its groups once), and the report names the
//!   groups the job named that do not exist;
//! - each job gets exactly one own report (a second only when a crash lost
//!   the store's note that the first was confirmed);
//! - every recipient available throughout gets the message at least once;
//! - recipients who got it more than once, among those whose presence did
//!   not change meanwhile, are no more than the report's
//!   `possible_duplicates`;
//! - nothing is acknowledged before its completion is committed and its
//!   report (or dead letter) confirmed;
//! - a job is reported expired only once its deadline has passed, and one
//!   published after its deadline sends nothing and is reported expired
//!   with every recipient in `skipped.expired`;
//! - a report that names its recipients names each once, in parts the
//!   broker took before it (see `names.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use herald::broadcast::Report;
use herald::core::{Destination, Publish};

use super::broker::{Broker, Message};
use super::groups::{ADDRESSED, MISSING};
use super::names::{self, Names};
use super::receipts::{self, Tally};
use super::report_checks::{check_expiry, check_missing_groups};
use super::server::{self, Server};
use super::store::Store;
use super::windows::{self, Windows};
use herald_testkit::draw::Draw;

pub struct Job {
    pub id: String,
    /// Indexes of simulated users among its recipients.
    pub users: BTreeSet<usize>,
    pub payload: Vec<u8>,
    /// Valid contract v1; otherwise it must be dead-lettered.
    pub valid: bool,
    pub published_at: Instant,
    /// Its `expires_at`, on simulated time.
    pub deadline: Option<Instant>,
    /// The groups it names.
    pub groups: Vec<&'static str>,
}

pub struct Ledger {
    pub start: Instant,
    pub jobs: Vec<Job>,
    to_publish: usize,
    /// job id -> own reports confirmed, the largest `possible_duplicates`,
    /// and whether one said the job expired or was cancelled.
    own_reports: BTreeMap<String, (u32, usize, bool)>,
    /// Any report (own or duplicate) confirmed, by job id.
    reported: BTreeSet<String>,
    /// Jobs whose confirmed report a crash left unrecorded in the store.
    crash_excused: BTreeSet<String>,
    dead_lettered: BTreeSet<usize>,
    names: Names,
    windows: Windows,
    receipts: Tally,
}

impl Ledger {
    pub fn new(rng: &mut Draw) -> Self {
        Ledger {
            start: Instant::now(),
            jobs: Vec::new(),
            to_publish: 4 + rng.below(10) as usize,
            own_reports: BTreeMap::new(),
            reported: BTreeSet::new(),
            crash_excused: BTreeSet::new(),
            dead_lettered: BTreeSet::new(),
            names: Names::default(),
            windows: Windows::default(),
            receipts: Tally::default(),
        }
    }

    pub fn all_published(&self) -> bool {
        self.jobs.len() >= self.to_publish
    }

    /// Every window a report said was open got its final report.
    pub fn windows_closed(&self) -> bool {
        self.windows.all_closed()
    }

    /// The application publishes a job: a new one, a bad one, or one it
    /// published before (the same id twice). A valid new job may also name
    /// groups (`audience` decides which, from `addressed`'s members).
    pub fn publish(
        &mut self,
        rng: &mut Draw,
        audience: &mut Draw,
        addressed: &[BTreeSet<usize>],
        now: Instant,
    ) -> Option<(usize, Vec<u8>)> {
        if self.all_published() {
            return None;
        }
        let index = self.jobs.len();
        if index > 0 && rng.chance(120) {
            let earlier = &self.jobs[rng.below(index as u64) as usize];
            let job = Job {
                id: earlier.id.clone(),
                users: earlier.users.clone(),
                payload: earlier.payload.clone(),
                valid: earlier.valid,
                published_at: now,
                deadline: earlier.deadline,
                groups: earlier.groups.clone(),
            };
            self.jobs.push(job);
            return Some((index, self.jobs[index].payload.clone()));
        }
        let id = format!("j{index}");
        let valid = !rng.chance(100);
        let mut users: BTreeSet<usize> = (0..server::USERS).filter(|_| rng.chance(500)).collect();
        if users.is_empty() {
            users.insert(rng.below(server::USERS as u64) as usize);
        }
        let mut to: Vec<String> = users
            .iter()
            .map(|u| server::user_jid(*u).to_string())
            .collect();
        if rng.chance(200) {
            to.push("ghost@localhost".into());
        }
        if rng.chance(100) {
            to.push("someone@elsewhere.example".into());
        }
        let policy = if rng.chance(500) {
            "online"
        } else {
            "available"
        };
        // Some jobs have a deadline: passed already, or soon.
        let deadline = rng.chance(250).then(|| {
            let from_start = now.duration_since(self.start);
            let at = if rng.chance(400) {
                from_start.saturating_sub(rng.millis(2_000))
            } else {
                from_start + rng.millis(3_000)
            };
            // Whole milliseconds: what the job says is what is checked.
            Duration::from_millis(at.as_millis() as u64)
        });
        let mut groups = Vec::new();
        let payload = if valid {
            let mut job = serde_json::json!({"id": id, "to": to, "body": format!("body of {id}"), "policy": policy});
            if let Some(at) = deadline {
                job["expires_at"] = calendar(at).into();
            }
            if names::asked(index) {
                job["report_names"] = true.into();
            }
            if windows::asked(index) {
                job["deliver_within_secs"] = windows::WINDOW_SECS.into();
            }
            if receipts::asked(index) {
                job["receipts"] = true.into();
                job["deliver_within_secs"] = receipts::WINDOW_SECS.into();
            }
            if receipts::asked_without_window(index) {
                job["receipts"] = true.into();
            }
            if audience.chance(400) {
                for (name, members) in ADDRESSED.iter().zip(addressed) {
                    if audience.chance(600) {
                        groups.push(*name);
                        users.extend(members);
                    }
                }
                if audience.chance(200) {
                    groups.push(MISSING);
                }
                job["groups"] = groups.clone().into();
            }
            job.to_string()
        } else if rng.chance(500) {
            format!("{{\"id\":\"{id}\",\"to\":[],\"body\":\"\"}}")
        } else {
            "not json".to_string()
        };
        self.jobs.push(Job {
            id,
            users,
            payload: payload.clone().into_bytes(),
            valid,
            published_at: now,
            deadline: deadline.map(|at| self.start + at),
            groups,
        });
        Some((index, payload.into_bytes()))
    }

    /// The broker took a publish (its confirm goes to Herald next) at `now`.
    pub fn on_publish_taken(
        &mut self,
        publish: &Publish,
        store: &Store,
        now: Instant,
    ) -> Result<(), String> {
        match &publish.destination {
            Destination::Events { routing_key } if routing_key == "job.report" => {
                let report: Report = serde_json::from_slice(&publish.payload)
                    .map_err(|e| format!("a report that is not a report: {e}"))?;
                if !report.is_complete() {
                    return Err(format!("report counts do not add up: {report:?}"));
                }
                if let Some(job) = self.jobs.iter().find(|j| j.id == report.id) {
                    check_missing_groups(job, &publish.payload)?;
                    let expected = job.recipient_count();
                    if report.recipients != expected {
                        return Err(format!(
                            "report of {} counts {} recipients, the job has {expected}",
                            report.id, report.recipients
                        ));
                    }
                    check_expiry(job, &report, now)?;
                }
                self.reported.insert(report.id.clone());
                if report.duplicate {
                    return Ok(());
                }
                if let Some(job) = self.jobs.iter().find(|j| j.id == report.id) {
                    let json = serde_json::from_slice(&publish.payload).unwrap_or_default();
                    self.names.check_report(job, &report, &json)?;
                    self.windows.on_report(job, &json)?;
                }
                let own = self.own_reports.entry(report.id.clone()).or_default();
                own.0 += 1;
                own.1 = own.1.max(report.possible_duplicates);
                own.2 |= report.expired || report.cancelled;
                if own.0 > 1 && !self.crash_excused.contains(&report.id) {
                    let stored = store.completed(&report.id);
                    return Err(format!(
                        "job {} got a second own report (stored as reported: {stored:?})",
                        report.id
                    ));
                }
                Ok(())
            }
            Destination::Events { routing_key } if routing_key == "job.report.names" => {
                self.names.on_part(&publish.payload)
            }
            Destination::Events { routing_key } if routing_key == "job.report.final" => {
                self.receipts.on_final(&publish.payload, now);
                self.windows.on_final(&publish.payload)
            }
            Destination::Events { routing_key } if routing_key == "job.report.final.names" => {
                self.windows.on_final_names(&publish.payload)
            }
            Destination::Events { .. } => Ok(()),
            Destination::DeadLetter { .. } => Ok(()),
            Destination::Reply { .. } => {
                let reply: herald::control::Reply = serde_json::from_slice(&publish.payload)
                    .map_err(|e| format!("a reply that is not a reply: {e}"))?;
                if reply.ok != reply.result.is_some() || reply.ok == reply.error.is_some() {
                    return Err(format!(
                        "a reply with neither or both of result and error: {reply:?}"
                    ));
                }
                Ok(())
            }
            Destination::DeadRequest { .. } => Ok(()),
            Destination::Job { .. } => Err("Herald queued a job of its own, and the worlds \
                                            run no ad-hoc commands"
                .into()),
        }
    }

    pub fn on_dead_letter(&mut self, job: usize) {
        self.dead_lettered.insert(job);
    }

    /// The broker settled these jobs with an acknowledgement.
    pub fn on_acked(
        &mut self,
        acked: &[Message],
        store: &Store,
        broker: &Broker,
    ) -> Result<(), String> {
        for message in acked {
            let job = &self.jobs[message.job];
            if !job.valid {
                if !self.dead_lettered.contains(&message.job) {
                    return Err(format!(
                        "bad job {} acknowledged without a dead letter",
                        job.id
                    ));
                }
                continue;
            }
            // A repeat of a job still in progress is answered as a
            // duplicate at once; the first copy must then still be with
            // the broker, to complete later.
            let copy_pending = broker.pending().any(|m| self.jobs[m.job].id == job.id);
            if store.completed(&job.id).is_none() && !copy_pending {
                return Err(format!(
                    "job {} acknowledged before its completion was committed",
                    job.id
                ));
            }
            if !self.reported.contains(&job.id) {
                return Err(format!(
                    "job {} acknowledged before a report of it was confirmed",
                    job.id
                ));
            }
        }
        Ok(())
    }

    /// Herald crashed: a report confirmed but not yet recorded as such in
    /// the store will be published again as the job's own.
    pub fn on_crash(&mut self, store: &Store, now: Instant) {
        self.receipts.on_crash(now);
        for id in self.own_reports.keys() {
            if store.completed(id) == Some(false) {
                self.crash_excused.insert(id.clone());
            }
        }
    }

    /// Once every job is settled: each got its report, or its dead letter;
    /// steady users got each message; duplicates are within the report's.
    pub fn check_end(&self, server: &Server) -> Result<(), String> {
        self.windows.check_end(&self.jobs, server)?;
        self.receipts
            .check_end(self.start, &self.jobs, &server.clients)?;
        for (index, job) in self.jobs.iter().enumerate() {
            if !job.valid {
                if !self.dead_lettered.contains(&index) {
                    return Err(format!("bad job {} was never dead-lettered", job.id));
                }
                continue;
            }
            let Some(&(own, possible_duplicates, stopped)) = self.own_reports.get(&job.id) else {
                return Err(format!("job {} got no own report", job.id));
            };
            if own == 0 {
                return Err(format!("job {} got no own report", job.id));
            }
            let first = self
                .jobs
                .iter()
                .find(|j| j.id == job.id)
                .map_or(job.published_at, |j| j.published_at);
            let mut twice = 0;
            for &user in &job.users {
                let got = server
                    .received
                    .get(&(job.id.clone(), user))
                    .copied()
                    .unwrap_or(0);
                if got > 0 && job.deadline.is_some_and(|deadline| deadline <= first) {
                    return Err(format!(
                        "u{user} got job {}, published after its deadline",
                        job.id
                    ));
                }
                // An attempt taken after the deadline, or cancelled,
                // reaches nobody (not yet reached).
                if got == 0 && !stopped && server.steady_since(user, first) {
                    return Err(format!(
                        "u{user} was available throughout job {} and never got it",
                        job.id
                    ));
                }
                // Every attempt sends to the same users while their
                // presence stands still; one who went away after an
                // earlier attempt reached them is beyond what the last
                // attempt can count.
                twice += usize::from(got > 1 && server.unchanged_since(user, first));
            }
            if twice > possible_duplicates {
                return Err(format!(
                    "{twice} recipients of job {} got it more than once; its report says {possible_duplicates} possible duplicates",
                    job.id
                ));
            }
        }
        Ok(())
    }
}

/// `since_start` on the simulated calendar, which starts at
/// 2026-12-06T12:00:00Z (as the world's wall clock does), in RFC 3339.
fn calendar(since_start: Duration) -> String {
    let ms = since_start.as_millis();
    let (hour, minute) = (12 + ms / 3_600_000, ms / 60_000 % 60);
    let (second, milli) = (ms / 1_000 % 60, ms % 1_000);
    format!("2026-12-06T{hour:02}:{minute:02}:{second:02}.{milli:03}Z")
}
