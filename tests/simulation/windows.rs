//! Jobs with a window (`deliver_within_secs`, asked for by every fourth
//! job from the second: by index, so that no world's random draws move):
//! a report says how many wait only when the job asked (a job asking for
//! receipts alone has a window too, in which nobody waits); every job whose
//! own report left someone waiting gets a final report before the world
//! ends, its counts add up to those who waited, and each recipient it
//! counts (or names) as reached late had a message the server read (as
//! `sent` means: their client may have gone offline meanwhile).

use std::collections::BTreeMap;

use serde_json::Value;

use super::checks::Job;
use super::server::{self, Server};

/// The window the application asks for.
pub const WINDOW_SECS: u64 = 2;

/// Whether the application asks for a window for job number `index`.
pub fn asked(index: usize) -> bool {
    index % 4 == 1
}

#[derive(Default)]
pub struct Windows {
    /// Job id -> `deferred` of each of its own reports.
    deferred: BTreeMap<String, Vec<u64>>,
    /// Job id -> its final reports taken by the broker.
    finals: BTreeMap<String, Vec<Value>>,
    /// Job id -> who its final reports' names say was reached late.
    late_names: BTreeMap<String, Vec<String>>,
    /// (job id, set) -> the numbers of the final names' parts taken.
    parts: BTreeMap<(String, u64), Vec<u64>>,
}

impl Windows {
    /// An own report (`json`) of `job`, as the broker took it.
    pub fn on_report(&mut self, job: &Job, json: &Value) -> Result<(), String> {
        let asked: Value = serde_json::from_slice(&job.payload).unwrap_or_default();
        let deferred = json["deferred"].as_u64();
        if asked["deliver_within_secs"].is_null() {
            // A job asking for receipts only has a window nobody waits in.
            return match (deferred, asked["receipts"] == true) {
                (None, _) => Ok(()),
                (Some(0), true) => {
                    self.deferred.entry(job.id.clone()).or_default().push(0);
                    Ok(())
                }
                (Some(_), _) => Err(format!("{} defers unasked: {json}", job.id)),
            };
        }
        // A job stopped before it went out opens no window.
        let stopped = json["expired"] == true || json["cancelled"] == true;
        let Some(deferred) = deferred.or(stopped.then_some(0)) else {
            return Err(format!("{} asked for a window; its report: {json}", job.id));
        };
        let skipped = &json["skipped"];
        let could_wait =
            skipped["offline"].as_u64().unwrap_or(0) + skipped["unavailable"].as_u64().unwrap_or(0);
        if deferred > could_wait {
            return Err(format!(
                "{} defers {deferred} of {could_wait} skipped: {json}",
                job.id
            ));
        }
        self.deferred
            .entry(job.id.clone())
            .or_default()
            .push(deferred);
        Ok(())
    }

    /// The broker took a final report.
    pub fn on_final(&mut self, payload: &[u8]) -> Result<(), String> {
        let last: Value = serde_json::from_slice(payload)
            .map_err(|e| format!("a final report that is not JSON: {e}"))?;
        let count = |field: &str| last[field].as_u64();
        let (Some(deferred), Some(late), Some(missed)) =
            (count("deferred"), count("late"), count("missed"))
        else {
            return Err(format!("a final report without its counts: {last}"));
        };
        if late + missed != deferred {
            return Err(format!("final report counts do not add up: {last}"));
        }
        let id = last["id"].as_str().unwrap_or_default().to_string();
        if let (Some(set), Some(count)) = (
            last["names"]["set"].as_u64(),
            last["names"]["parts"].as_u64(),
        ) {
            let taken = self
                .parts
                .get(&(id.clone(), set))
                .cloned()
                .unwrap_or_default();
            if taken != (1..=count).collect::<Vec<_>>() {
                return Err(format!(
                    "final report of {id} refers to {count} parts; the broker took {taken:?}"
                ));
            }
        }
        let reported = self.deferred.get(&id).into_iter().flatten();
        if !reported.clone().any(|d| *d == deferred) {
            return Err(format!(
                "final report of {id} says {deferred} waited; its reports said {:?}",
                reported.collect::<Vec<_>>()
            ));
        }
        self.finals.entry(id).or_default().push(last);
        Ok(())
    }

    /// The broker took a part of a final report's names.
    pub fn on_final_names(&mut self, payload: &[u8]) -> Result<(), String> {
        let part: Value = serde_json::from_slice(payload)
            .map_err(|e| format!("final names that are not JSON: {e}"))?;
        let id = part["id"].as_str().unwrap_or_default().to_string();
        let set = part["set"].as_u64().unwrap_or_default();
        let numbers = self.parts.entry((id.clone(), set)).or_default();
        let number = part["part"].as_u64().unwrap_or_default();
        if !numbers.contains(&number) {
            numbers.push(number);
        }
        let late = part["late"].as_array().cloned().unwrap_or_default();
        let names = late.iter().filter_map(Value::as_str).map(str::to_string);
        self.late_names.entry(id).or_default().extend(names);
        Ok(())
    }

    /// Every job whose own report left someone waiting got its final
    /// report.
    pub fn all_closed(&self) -> bool {
        self.deferred
            .iter()
            .all(|(id, deferred)| deferred.iter().all(|d| *d == 0) || self.finals.contains_key(id))
    }

    /// At the end: each final report's late recipients had a message the
    /// server read.
    pub fn check_end(&self, jobs: &[Job], server: &Server) -> Result<(), String> {
        for (id, finals) in &self.finals {
            let Some(job) = jobs.iter().find(|j| &j.id == id) else {
                continue;
            };
            let got = |user: usize| server.read.get(&(id.clone(), user)).is_some_and(|n| *n > 0);
            let reached = job.users.iter().filter(|u| got(**u)).count() as u64;
            for last in finals {
                let late = last["late"].as_u64().unwrap_or(0);
                if late > reached {
                    return Err(format!(
                        "final report of {id} counts {late} reached late; the server read {reached} of its users' messages"
                    ));
                }
            }
            for name in self.late_names.get(id).into_iter().flatten() {
                let user = (0..server::USERS).find(|u| server::user_jid(*u).as_str() == name);
                if !user.is_some_and(got) {
                    return Err(format!("{name} named reached late by {id}, never got it"));
                }
            }
        }
        Ok(())
    }
}
