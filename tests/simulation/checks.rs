//! The jobs an application publishes in the simulated world, and the
//! guarantees of docs/reliability.md checked against what the simulated
//! server, broker and store saw:
//!
//! - every recipient of every job is counted once in the job's own report;
//! - each job gets exactly one own report (a second only when a crash lost
//!   the store's note that the first was confirmed);
//! - every recipient available throughout gets the message at least once;
//! - recipients who got it more than once, among those whose presence did
//!   not change meanwhile, are no more than the report's
//!   `possible_duplicates`;
//! - nothing is acknowledged before its completion is committed and its
//!   report (or dead letter) confirmed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use herald::broadcast::Report;
use herald::core::{Destination, Publish};

use super::broker::{Broker, Message};
use super::rng::Rng;
use super::server::{self, Server};
use super::store::Store;

pub struct Job {
    pub id: String,
    /// Indexes of simulated users among its recipients.
    pub users: BTreeSet<usize>,
    pub payload: Vec<u8>,
    /// Valid contract v1; otherwise it must be dead-lettered.
    pub valid: bool,
    pub published_at: Instant,
}

pub struct Ledger {
    pub start: Instant,
    pub jobs: Vec<Job>,
    to_publish: usize,
    /// job id -> own reports confirmed, and the largest `possible_duplicates`.
    own_reports: BTreeMap<String, (u32, usize)>,
    /// Any report (own or duplicate) confirmed, by job id.
    reported: BTreeSet<String>,
    /// Jobs whose confirmed report a crash left unrecorded in the store.
    crash_excused: BTreeSet<String>,
    dead_lettered: BTreeSet<usize>,
}

impl Ledger {
    pub fn new(rng: &mut Rng) -> Self {
        Ledger {
            start: Instant::now(),
            jobs: Vec::new(),
            to_publish: 4 + rng.below(10) as usize,
            own_reports: BTreeMap::new(),
            reported: BTreeSet::new(),
            crash_excused: BTreeSet::new(),
            dead_lettered: BTreeSet::new(),
        }
    }

    pub fn all_published(&self) -> bool {
        self.jobs.len() >= self.to_publish
    }

    /// The application publishes a job: a new one, a bad one, or one it
    /// published before (the same id twice).
    pub fn publish(&mut self, rng: &mut Rng, now: Instant) -> Option<(usize, Vec<u8>)> {
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
        let payload = if valid {
            serde_json::json!({"id": id, "to": to, "body": format!("body of {id}"), "policy": policy})
                .to_string()
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
        });
        Some((index, payload.into_bytes()))
    }

    /// The broker took a publish (its confirm goes to Herald next).
    pub fn on_publish_taken(&mut self, publish: &Publish, store: &Store) -> Result<(), String> {
        match &publish.destination {
            Destination::Events { routing_key } if routing_key == "job.report" => {
                let report: Report = serde_json::from_slice(&publish.payload)
                    .map_err(|e| format!("a report that is not a report: {e}"))?;
                if !report.is_complete() {
                    return Err(format!("report counts do not add up: {report:?}"));
                }
                if let Some(job) = self.jobs.iter().find(|j| j.id == report.id) {
                    let expected = job.recipient_count();
                    if report.recipients != expected {
                        return Err(format!(
                            "report of {} counts {} recipients, the job has {expected}",
                            report.id, report.recipients
                        ));
                    }
                }
                self.reported.insert(report.id.clone());
                if report.duplicate {
                    return Ok(());
                }
                let own = self.own_reports.entry(report.id.clone()).or_default();
                own.0 += 1;
                own.1 = own.1.max(report.possible_duplicates);
                if own.0 > 1 && !self.crash_excused.contains(&report.id) {
                    let stored = store.completed(&report.id);
                    return Err(format!(
                        "job {} got a second own report (stored as reported: {stored:?})",
                        report.id
                    ));
                }
                Ok(())
            }
            Destination::Events { .. } => Ok(()),
            Destination::DeadLetter { .. } => Ok(()),
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
            let copy_pending = broker
                .queue
                .iter()
                .chain(broker.unacked.values())
                .any(|m| self.jobs[m.job].id == job.id);
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
    pub fn on_crash(&mut self, store: &Store) {
        for id in self.own_reports.keys() {
            if store.completed(id) == Some(false) {
                self.crash_excused.insert(id.clone());
            }
        }
    }

    /// Once every job is settled: each got its report, or its dead letter;
    /// steady users got each message; duplicates are within the report's.
    pub fn check_end(&self, server: &Server) -> Result<(), String> {
        for (index, job) in self.jobs.iter().enumerate() {
            if !job.valid {
                if !self.dead_lettered.contains(&index) {
                    return Err(format!("bad job {} was never dead-lettered", job.id));
                }
                continue;
            }
            let Some(&(own, possible_duplicates)) = self.own_reports.get(&job.id) else {
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
                if got == 0 && server.steady_since(user, first) {
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

impl Job {
    /// Distinct entries of `to`, as the report counts them.
    fn recipient_count(&self) -> usize {
        let value: serde_json::Value = serde_json::from_slice(&self.payload).unwrap_or_default();
        let to: BTreeSet<String> = value["to"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        to.len()
    }
}
