//! Which jobs Herald has taken on, by the key their handler gives them (a
//! broadcast job's `id`), so that a job published twice is delivered once.
//! A job is "in progress" from its fan-out until the server confirmed its
//! stanzas, then "completed" and remembered (a bounded window, oldest
//! forgotten first; the store keeps the same window across restarts).
//! Pure bookkeeping: the event loop persists what it returns.

use std::collections::{HashMap, VecDeque};

use crate::handler::Event;

pub struct Ledger {
    in_progress: HashMap<String, Event>,
    completed: HashMap<String, Event>,
    /// Completed keys, oldest first, with their completion sequence numbers.
    order: VecDeque<String>,
    next_seq: u64,
    capacity: usize,
}

/// A job that just completed, for the store.
#[derive(Debug, PartialEq, Eq)]
pub struct Completion {
    pub seq: u64,
    /// Keys that fell out of the remembered window.
    pub forgotten: Vec<String>,
}

impl Ledger {
    /// An empty ledger that remembers `capacity` completed jobs.
    pub fn new(capacity: usize) -> Self {
        Ledger {
            in_progress: HashMap::new(),
            completed: HashMap::new(),
            order: VecDeque::new(),
            next_seq: 1,
            capacity,
        }
    }

    /// Restores a job completed in an earlier run (call oldest first).
    /// Returns the keys beyond the window, for the store to forget.
    pub fn restore(&mut self, key: String, seq: u64, report: Event) -> Vec<String> {
        self.next_seq = self.next_seq.max(seq + 1);
        self.remember(key, report)
    }

    /// The report of a job with this key that is in progress or completed.
    pub fn earlier_report(&self, key: &str) -> Option<&Event> {
        self.in_progress
            .get(key)
            .or_else(|| self.completed.get(key))
    }

    pub fn start(&mut self, key: String, report: Event) {
        self.in_progress.insert(key, report);
    }

    /// The job will be processed again (it went back to the queue).
    pub fn abandon(&mut self, key: &str) {
        self.in_progress.remove(key);
    }

    /// The server confirmed the job's stanzas.
    pub fn complete(&mut self, key: &str, report: Event) -> Completion {
        self.in_progress.remove(key);
        let seq = self.next_seq;
        self.next_seq += 1;
        let forgotten = self.remember(key.to_string(), report);
        Completion { seq, forgotten }
    }

    pub fn completed_len(&self) -> usize {
        self.completed.len()
    }

    fn remember(&mut self, key: String, report: Event) -> Vec<String> {
        if self.completed.insert(key.clone(), report).is_none() {
            self.order.push_back(key);
        }
        let mut forgotten = Vec::new();
        while self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.completed.remove(&oldest);
                forgotten.push(oldest);
            }
        }
        forgotten
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(id: &str) -> Event {
        Event {
            routing_key: "job.report".into(),
            payload: id.as_bytes().to_vec(),
        }
    }

    #[test]
    fn a_key_is_known_from_its_start_until_it_is_abandoned_or_forgotten() {
        let mut ledger = Ledger::new(2);
        assert!(ledger.earlier_report("a").is_none());
        ledger.start("a".into(), report("a"));
        assert_eq!(ledger.earlier_report("a"), Some(&report("a")));
        ledger.abandon("a");
        assert!(ledger.earlier_report("a").is_none());

        ledger.start("a".into(), report("a"));
        assert_eq!(
            ledger.complete("a", report("a")),
            Completion {
                seq: 1,
                forgotten: vec![]
            }
        );
        assert_eq!(ledger.earlier_report("a"), Some(&report("a")));
        ledger.complete("b", report("b"));
        let third = ledger.complete("c", report("c"));
        assert_eq!(third.seq, 3);
        assert_eq!(third.forgotten, vec!["a".to_string()]);
        assert!(ledger.earlier_report("a").is_none());
        assert_eq!(ledger.completed_len(), 2);
    }

    #[test]
    fn restored_jobs_continue_the_sequence_and_respect_the_window() {
        let mut ledger = Ledger::new(2);
        assert!(ledger.restore("a".into(), 7, report("a")).is_empty());
        assert!(ledger.restore("b".into(), 9, report("b")).is_empty());
        assert_eq!(ledger.restore("c".into(), 10, report("c")), vec!["a"]);
        assert_eq!(ledger.complete("d", report("d")).seq, 11);
    }
}
