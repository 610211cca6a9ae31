//! Reports that name their recipients (`report_names`, asked for by every
//! fifth job: by index, so that no world's random draws move): the parts
//! a report refers to were all taken by the broker before it, and name
//! every recipient exactly once, in the list of the count that counts it.

use std::collections::{BTreeMap, BTreeSet};

use herald::broadcast::names::Part;
use herald::broadcast::Report;

use super::checks::Job;
use super::server;

/// Whether the application asks for the names of job number `index`.
pub fn asked(index: usize) -> bool {
    index.is_multiple_of(5)
}

#[derive(Default)]
pub struct Names {
    /// (job id, set) -> part number -> the part.
    parts: BTreeMap<(String, u64), BTreeMap<usize, Part>>,
}

impl Names {
    /// The broker took a part.
    pub fn on_part(&mut self, payload: &[u8]) -> Result<(), String> {
        let part: Part = serde_json::from_slice(payload)
            .map_err(|e| format!("a names part that is not one: {e}"))?;
        if part.part == 0 || part.part > part.parts {
            return Err(format!("part {} of {}", part.part, part.parts));
        }
        let set = self.parts.entry((part.id.clone(), part.set)).or_default();
        match set.get(&part.part) {
            Some(earlier) if *earlier != part => Err(format!(
                "part {} of set {} of {} published twice, differently",
                part.part, part.set, part.id
            )),
            _ => {
                set.insert(part.part, part);
                Ok(())
            }
        }
    }

    /// `report` (`json` as published) of `job`, not a duplicate's.
    pub fn check_report(
        &self,
        job: &Job,
        report: &Report,
        json: &serde_json::Value,
    ) -> Result<(), String> {
        let asked: serde_json::Value = serde_json::from_slice(&job.payload).unwrap_or_default();
        let names = &json["names"];
        if asked["report_names"] != true {
            return match names.is_null() {
                true => Ok(()),
                false => Err(format!("{} names recipients unasked: {json}", job.id)),
            };
        }
        let (Some(set), Some(count)) = (names["set"].as_u64(), names["parts"].as_u64()) else {
            return Err(format!("{} asked for names; its report: {json}", job.id));
        };
        let parts = self.parts.get(&(job.id.clone(), set));
        let parts: Vec<&Part> = parts.into_iter().flat_map(|p| p.values()).collect();
        let numbers: Vec<(usize, usize)> = parts.iter().map(|p| (p.part, p.parts)).collect();
        let expected: Vec<(usize, usize)> =
            (1..=count as usize).map(|k| (k, count as usize)).collect();
        if numbers != expected {
            return Err(format!(
                "{} reported {count} parts of set {set}; the broker took {numbers:?}",
                job.id
            ));
        }
        let lists = |pick: fn(&Part) -> &Vec<String>| -> Vec<String> {
            parts.iter().flat_map(|p| pick(p).iter().cloned()).collect()
        };
        let counted = [
            ("sent", lists(|p| &p.sent), report.sent),
            ("offline", lists(|p| &p.offline), report.skipped.offline),
            (
                "unavailable",
                lists(|p| &p.unavailable),
                report.skipped.unavailable,
            ),
            ("invalid", lists(|p| &p.invalid), report.skipped.invalid),
            ("expired", lists(|p| &p.expired), report.skipped.expired),
            (
                "cancelled",
                lists(|p| &p.cancelled),
                report.skipped.cancelled,
            ),
        ];
        let mut everyone = BTreeSet::new();
        for (count_name, names, count) in &counted {
            if names.len() != *count {
                return Err(format!(
                    "{} names {} {count_name}, counts {count}",
                    job.id,
                    names.len()
                ));
            }
            for name in names {
                if !everyone.insert(name.clone()) {
                    return Err(format!("{} names {name} twice", job.id));
                }
            }
        }
        if everyone.len() != report.recipients || !lists(|p| &p.unknown).is_empty() {
            return Err(format!(
                "{} names {} of {} recipients",
                job.id,
                everyone.len(),
                report.recipients
            ));
        }
        for user in &job.users {
            let jid = server::user_jid(*user).to_string();
            if !everyone.contains(&jid) {
                return Err(format!("{} does not name its recipient {jid}", job.id));
            }
        }
        Ok(())
    }
}
