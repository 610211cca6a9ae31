//! Which jobs Herald has taken on, by the key their handler gives them (a
//! broadcast job's `id`), so that a job published twice is delivered once.
//! A job is "in progress" from its fan-out until the server confirmed its
//! stanzas, then "completed" and remembered (a bounded window, oldest
//! forgotten first; the store keeps the same window across restarts).
//! A job completed in an earlier run whose report the broker never
//! confirmed (Herald stopped in between) still owes its report: its first
//! repeat gets the original report, not a duplicate's.
//! Jobs cancelled by the control plane are remembered the same way (a
//! window of as many keys, oldest forgotten first), so that a cancelled
//! job sends nothing when it comes up.
//! Pure bookkeeping: the event loop persists what it returns.

use std::collections::VecDeque;

use crate::handler::Event;

/// Jobs' keys are hashed with foldhash, seeded at random per map, as
/// users' JIDs are ([`crate::user_text::UserHasher`]): a one-recipient job
/// looks its key up about seven times in its life, and SipHash cost about
/// as much as the rest of each lookup. Keys come from producers, not from
/// strangers, and the random seed keeps colliding keys from being prepared.
type HashMap<K, V> = hashbrown::HashMap<K, V, hashbrown::DefaultHashBuilder>;
type HashSet<K> = hashbrown::HashSet<K, hashbrown::DefaultHashBuilder>;

pub struct Ledger {
    in_progress: HashMap<String, Event>,
    /// Keys of attempts given up before they completed (their messages
    /// may have been delivered), until the job completes.
    abandoned: HashSet<String>,
    /// Checkpoint tokens of jobs that did not complete (yet).
    progress: HashMap<String, Vec<u8>>,
    completed: Window<Completed>,
    next_seq: u64,
    cancelled: Window<()>,
}

/// The last `capacity` keys put in, each with its value: the oldest is
/// forgotten first.
struct Window<V> {
    values: HashMap<String, V>,
    /// Oldest first.
    order: VecDeque<String>,
    capacity: usize,
}

impl<V> Window<V> {
    fn new(capacity: usize) -> Self {
        Window {
            values: HashMap::default(),
            order: VecDeque::new(),
            capacity,
        }
    }

    /// Puts `value` in under `key` (a key already in keeps its place).
    fn put(&mut self, key: String, value: V) {
        if self.values.insert(key.clone(), value).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.values.remove(&oldest);
            }
        }
    }
}

struct Completed {
    report: Event,
    report_owed: bool,
}

/// What is known of an earlier job with the same key.
#[derive(Debug, PartialEq, Eq)]
pub struct Earlier<'a> {
    pub report: &'a Event,
    /// Nobody will publish this report otherwise: publish it as the job's
    /// own report, not as a duplicate's.
    pub report_owed: bool,
}

impl Ledger {
    /// An empty ledger that remembers `capacity` completed jobs.
    pub fn new(capacity: usize) -> Self {
        Ledger {
            in_progress: HashMap::default(),
            abandoned: HashSet::default(),
            progress: HashMap::default(),
            completed: Window::new(capacity),
            next_seq: 1,
            cancelled: Window::new(crate::store::cancelled_window(capacity)),
        }
    }

    /// Restores a job completed in an earlier run (call oldest first).
    pub fn restore(&mut self, key: String, seq: u64, report: Event, reported: bool) {
        self.next_seq = self.next_seq.max(seq + 1);
        self.completed.put(
            key,
            Completed {
                report,
                report_owed: !reported,
            },
        )
    }

    /// A job with this key that is in progress or completed.
    pub fn earlier(&self, key: &str) -> Option<Earlier<'_>> {
        if let Some(report) = self.in_progress.get(key) {
            return Some(Earlier {
                report,
                report_owed: false,
            });
        }
        self.completed.values.get(key).map(|done| Earlier {
            report: &done.report,
            report_owed: done.report_owed,
        })
    }

    /// The last confirmed checkpoint of a job that has not completed.
    pub fn progress(&self, key: &str) -> Option<&[u8]> {
        self.progress.get(key).map(Vec::as_slice)
    }

    /// The server confirmed the job's stanzas up to a checkpoint.
    pub fn advance(&mut self, key: String, token: Vec<u8>) {
        if !self.completed.values.contains_key(&key) {
            self.progress.insert(key, token);
        }
    }

    /// The report of a completed job was not published after all.
    pub fn owe(&mut self, key: &str) {
        if let Some(done) = self.completed.values.get_mut(key) {
            done.report_owed = true;
        }
    }

    /// The owed report of a completed job is being published now.
    pub fn reporting(&mut self, key: &str) {
        if let Some(done) = self.completed.values.get_mut(key) {
            done.report_owed = false;
        }
    }

    pub fn start(&mut self, key: String, report: Event) {
        self.in_progress.insert(key, report);
    }

    /// The job will be processed again (it went back to the queue) after
    /// an attempt that may have sent some of its messages.
    pub fn abandon(&mut self, key: &str) {
        self.in_progress.remove(key);
        self.abandoned.insert(key.to_string());
    }

    /// Whether an earlier attempt at the job may have sent some of its
    /// messages: one was given up, or one saved a checkpoint.
    pub fn attempted(&self, key: &str) -> bool {
        self.abandoned.contains(key) || self.progress.contains_key(key)
    }

    /// The server confirmed the job's stanzas. Returns the job's
    /// completion sequence number: the store forgets the lowest first, as
    /// this ledger does.
    pub fn complete(&mut self, key: &str, report: Event) -> u64 {
        self.in_progress.remove(key);
        self.abandoned.remove(key);
        self.progress.remove(key);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.completed.put(
            key.to_string(),
            Completed {
                report,
                report_owed: false,
            },
        );
        seq
    }

    /// The job with this key is cancelled (also to restore a cancellation
    /// of an earlier run, oldest first).
    pub fn cancel(&mut self, key: String) {
        self.cancelled.put(key, ());
    }

    pub fn is_cancelled(&self, key: &str) -> bool {
        self.cancelled.values.contains_key(key)
    }

    pub fn completed_len(&self) -> usize {
        self.completed.values.len()
    }

    pub fn cancelled_len(&self) -> usize {
        self.cancelled.values.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn earlier(report: &Event, report_owed: bool) -> Earlier<'_> {
        Earlier {
            report,
            report_owed,
        }
    }

    fn report(id: &str) -> Event {
        Event {
            routing_key: "job.report".into(),
            payload: id.as_bytes().to_vec(),
        }
    }

    #[test]
    fn a_key_is_known_from_its_start_until_it_is_abandoned_or_forgotten() {
        let mut ledger = Ledger::new(2);
        assert!(ledger.earlier("a").is_none());
        ledger.start("a".into(), report("a"));
        assert_eq!(ledger.earlier("a"), Some(earlier(&report("a"), false)));
        ledger.abandon("a");
        assert!(ledger.earlier("a").is_none());

        ledger.start("a".into(), report("a"));
        assert_eq!(ledger.complete("a", report("a")), 1);
        assert_eq!(ledger.earlier("a"), Some(earlier(&report("a"), false)));
        ledger.complete("b", report("b"));
        assert_eq!(ledger.complete("c", report("c")), 3);
        assert!(ledger.earlier("a").is_none(), "the oldest is forgotten");
        assert!(ledger.earlier("b").is_some());
        assert_eq!(ledger.completed_len(), 2);
    }

    #[test]
    fn cancelled_keys_are_remembered_in_a_window_of_their_own() {
        let mut ledger = Ledger::new(0);
        ledger.cancel("a".into());
        ledger.cancel("b".into());
        ledger.cancel("a".into());
        ledger.complete("c", report("c"));
        assert!(ledger.earlier("c").is_none(), "no completed job remembered");
        assert!(ledger.is_cancelled("a") && ledger.is_cancelled("b"));
        for n in 0..crate::store::cancelled_window(0) - 1 {
            ledger.cancel(n.to_string());
        }
        assert!(!ledger.is_cancelled("a"), "the oldest is forgotten");
        assert!(ledger.is_cancelled("b") && ledger.is_cancelled("0"));
    }

    #[test]
    fn restored_jobs_continue_the_sequence_and_respect_the_window() {
        let mut ledger = Ledger::new(2);
        ledger.restore("a".into(), 7, report("a"), true);
        ledger.restore("b".into(), 9, report("b"), true);
        ledger.restore("c".into(), 10, report("c"), true);
        assert!(ledger.earlier("a").is_none(), "beyond the window");
        assert_eq!(ledger.completed_len(), 2);
        assert_eq!(ledger.complete("d", report("d")), 11);
    }

    #[test]
    fn progress_is_kept_until_the_job_completes() {
        let mut ledger = Ledger::new(2);
        ledger.advance("a".into(), b"1".to_vec());
        ledger.advance("a".into(), b"2".to_vec());
        assert_eq!(ledger.progress("a"), Some(&b"2"[..]));
        ledger.complete("a", report("a"));
        assert_eq!(ledger.progress("a"), None);
        ledger.advance("a".into(), b"3".to_vec());
        assert_eq!(
            ledger.progress("a"),
            None,
            "a late checkpoint of a completed job"
        );
    }

    #[test]
    fn a_restored_job_whose_report_was_never_confirmed_owes_it_once() {
        let mut ledger = Ledger::new(2);
        ledger.restore("a".into(), 1, report("a"), false);
        assert_eq!(ledger.earlier("a"), Some(earlier(&report("a"), true)));
        ledger.reporting("a");
        assert_eq!(ledger.earlier("a"), Some(earlier(&report("a"), false)));
        ledger.owe("a");
        assert_eq!(ledger.earlier("a"), Some(earlier(&report("a"), true)));
    }
}
