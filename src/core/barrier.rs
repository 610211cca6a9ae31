//! What the server has really read. XEP-0114 has no acknowledgements and a
//! busy server may leave our writes in socket buffers for many seconds, so
//! Herald follows its writes with a ping to the server: the server answers
//! it only after reading everything sent before it on the stream. A job is
//! acknowledged only once a ping sent after its last stanza was answered.
//! Each ping also carries a mark, the count of stanzas queued before it,
//! so that the stanzas written and not yet proven read are known at any
//! time: the queue an urgent message would wait behind.
//! Pure bookkeeping: the event loop sends the pings and applies the results.

use std::collections::VecDeque;
use std::time::Duration;

use std::time::Instant;

/// Barriers that may be unanswered at once; more would only add pings.
const MAX_IN_FLIGHT: usize = 4;

#[derive(Debug)]
struct InFlight<T> {
    id: String,
    covers: Vec<T>,
    settles_presence: bool,
    sent_at: Instant,
    /// Stanzas queued up to the ping, itself included, since the core
    /// started.
    mark: u64,
    /// Of those, the ones not proven read when the ping was queued.
    ahead: u64,
}

/// Work waiting for the server to prove it has read the stanzas before it.
#[derive(Debug)]
pub struct Barriers<T> {
    next_id: u64,
    prefix: String,
    uncovered: Vec<T>,
    settle_requested: bool,
    in_flight: VecDeque<InFlight<T>>,
    /// The mark of the last ping queued, and of the last one answered.
    last_mark: u64,
    read: u64,
}

/// What an answered barrier released.
#[derive(Debug, PartialEq, Eq)]
pub struct Released<T> {
    pub work: Vec<T>,
    /// A barrier sent after presence probes was answered.
    pub presence_settled: bool,
    /// How long the server took to answer: how far behind it reads.
    pub roundtrip: Duration,
    /// Stanzas the server had yet to read when the ping was queued, the
    /// ping included: read within `roundtrip`.
    pub ahead: u64,
}

impl<T> Barriers<T> {
    pub fn new(prefix: &str) -> Self {
        Barriers {
            next_id: 0,
            prefix: prefix.to_string(),
            uncovered: Vec::new(),
            settle_requested: false,
            in_flight: VecDeque::new(),
            last_mark: 0,
            read: 0,
        }
    }

    /// Adds work whose stanzas have just been queued.
    pub fn push(&mut self, work: T) {
        self.uncovered.push(work);
    }

    /// Asks for a barrier after probes, to learn when their answers are in.
    pub fn request_settle(&mut self) {
        self.settle_requested = true;
    }

    /// Returns the id of a ping to send now, if one is due: work or stanzas
    /// (`queued` counts them, as [`Barriers::ping_now`]) wait for one.
    pub fn next_ping(&mut self, now: Instant, queued: u64) -> Option<String> {
        let due = !self.uncovered.is_empty() || self.settle_requested || queued > self.last_mark;
        (due && self.in_flight.len() < MAX_IN_FLIGHT).then(|| self.ping_now(now, queued))
    }

    /// Returns the id of a keepalive ping to send now: one goes when none
    /// is out, or when the oldest out has waited `stale_after` for its
    /// answer. An answer the server lost (a cluster node may route it to a
    /// session of Herald's just closed) would otherwise hold back all the
    /// work behind it until the stream's read timeout ended the stream; the
    /// answer to a later ping releases what the earlier ones cover.
    pub fn keepalive(
        &mut self,
        now: Instant,
        queued: u64,
        stale_after: Duration,
    ) -> Option<String> {
        let stale = (self.in_flight.front())
            .is_some_and(|oldest| now.saturating_duration_since(oldest.sent_at) >= stale_after);
        let room = self.in_flight.len() < MAX_IN_FLIGHT;
        (self.in_flight.is_empty() || stale && room).then(|| self.ping_now(now, queued))
    }

    /// Returns the id of a ping to send now, whatever is in flight: a
    /// checkpoint inside a long job needs its own place in the stream.
    /// `queued`: the stanzas queued since the core started, before the
    /// ping, which is to be queued next.
    pub fn ping_now(&mut self, now: Instant, queued: u64) -> String {
        self.next_id += 1;
        let id = format!("{}-{}", self.prefix, self.next_id);
        let mark = queued + 1;
        self.last_mark = mark;
        self.in_flight.push_back(InFlight {
            id: id.clone(),
            covers: std::mem::take(&mut self.uncovered),
            settles_presence: std::mem::take(&mut self.settle_requested),
            sent_at: now,
            mark,
            ahead: mark.saturating_sub(self.read),
        });
        id
    }

    /// The server answered ping `id`: everything sent before it is read.
    /// Returns `None` if `id` is not one of ours.
    pub fn answered(&mut self, id: &str, now: Instant) -> Option<Released<T>> {
        let position = self.in_flight.iter().position(|b| b.id == id)?;
        let answered = &self.in_flight[position];
        let mut released = Released {
            work: Vec::new(),
            presence_settled: false,
            roundtrip: now.saturating_duration_since(answered.sent_at),
            ahead: answered.ahead,
        };
        self.read = self.read.max(answered.mark);
        for barrier in self.in_flight.drain(..=position) {
            released.work.extend(barrier.covers);
            released.presence_settled |= barrier.settles_presence;
        }
        Some(released)
    }

    /// Of the `queued` stanzas, those not proven read.
    pub fn unread(&self, queued: u64) -> u64 {
        queued.saturating_sub(self.read)
    }

    /// The stream is gone, with everything queued for it (`queued`):
    /// returns all work not proven read.
    pub fn abandon(&mut self, queued: u64) -> Vec<T> {
        let mut work: Vec<T> = self.in_flight.drain(..).flat_map(|b| b.covers).collect();
        work.append(&mut self.uncovered);
        self.settle_requested = false;
        self.last_mark = queued;
        self.read = queued;
        work
    }

    pub fn is_idle(&self) -> bool {
        self.uncovered.is_empty() && self.in_flight.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Instant {
        Instant::now()
    }

    #[test]
    fn nothing_to_cover_sends_no_ping_unless_forced() {
        let mut barriers: Barriers<u32> = Barriers::new("b");
        let stale_after = Duration::from_secs(30);
        assert_eq!(barriers.next_ping(now(), 0), None);
        assert_eq!(
            barriers.keepalive(now(), 0, stale_after).as_deref(),
            Some("b-1")
        );
        assert_eq!(
            barriers.keepalive(now(), 0, stale_after),
            None,
            "a keepalive is already out"
        );
    }

    #[test]
    fn a_keepalive_goes_past_a_ping_whose_answer_is_overdue_and_its_answer_releases_both() {
        let stale_after = Duration::from_secs(30);
        let t0 = now();
        let mut barriers = Barriers::new("b");
        barriers.push(1);
        let lost = barriers.next_ping(t0, 1).unwrap();
        let before = t0 + stale_after - Duration::from_millis(1);
        assert_eq!(barriers.keepalive(before, 1, stale_after), None);
        let at = t0 + stale_after;
        let again = barriers.keepalive(at, 1, stale_after).expect("a new ping");
        assert_ne!(again, lost);
        assert_eq!(barriers.answered(&again, at).unwrap().work, vec![1]);
        assert!(barriers.is_idle());

        // No room: the pings out are all overdue, and nothing more goes.
        for i in 0..MAX_IN_FLIGHT {
            barriers.push(i);
            barriers.next_ping(t0, 1).unwrap();
        }
        assert_eq!(barriers.keepalive(at, 1, stale_after), None);
    }

    #[test]
    fn answer_releases_work_covered_by_it_and_earlier_barriers() {
        let mut barriers = Barriers::new("b");
        barriers.push(1);
        let first = barriers.next_ping(now(), 0).unwrap();
        barriers.push(2);
        let second = barriers.next_ping(now(), 0).unwrap();
        barriers.push(3);
        assert_ne!(first, second);
        let released = barriers.answered(&second, now()).unwrap();
        assert_eq!(released.work, vec![1, 2]);
        assert!(!released.presence_settled);
        assert!(
            barriers.answered(&first, now()).is_none(),
            "already released"
        );
        assert!(!barriers.is_idle());
        assert_eq!(barriers.abandon(0), vec![3]);
        assert!(barriers.is_idle());
    }

    #[test]
    fn in_flight_barriers_are_bounded() {
        let mut barriers = Barriers::new("b");
        for i in 0..MAX_IN_FLIGHT {
            barriers.push(i);
            assert!(barriers.next_ping(now(), 0).is_some());
        }
        barriers.push(99);
        assert_eq!(barriers.next_ping(now(), 0), None);
        barriers.answered("b-1", now()).unwrap();
        assert!(barriers.next_ping(now(), 0).is_some());
    }

    #[test]
    fn a_checkpoint_ping_goes_out_even_when_the_in_flight_limit_is_reached() {
        let mut barriers = Barriers::new("b");
        for i in 0..MAX_IN_FLIGHT {
            barriers.push(i);
            barriers.next_ping(now(), 0).unwrap();
        }
        barriers.push(99);
        let id = barriers.ping_now(now(), 0);
        assert_eq!(
            barriers.answered(&id, now()).unwrap().work.last(),
            Some(&99)
        );
    }

    #[test]
    fn settle_request_is_reported_when_answered() {
        let mut barriers: Barriers<u32> = Barriers::new("b");
        barriers.request_settle();
        let id = barriers.next_ping(now(), 0).unwrap();
        assert!(barriers.answered(&id, now()).unwrap().presence_settled);
    }

    #[test]
    fn roundtrip_is_measured_from_the_answered_ping() {
        let mut barriers: Barriers<u32> = Barriers::new("b");
        let sent = now();
        barriers.push(1);
        let id = barriers.next_ping(sent, 0).unwrap();
        let released = barriers
            .answered(&id, sent + Duration::from_millis(1500))
            .unwrap();
        assert_eq!(released.roundtrip, Duration::from_millis(1500));
    }

    #[test]
    fn unknown_answer_is_ignored() {
        let mut barriers: Barriers<u32> = Barriers::new("b");
        barriers.push(1);
        barriers.next_ping(now(), 0).unwrap();
        assert!(barriers.answered("other-1", now()).is_none());
        assert_eq!(barriers.abandon(0), vec![1]);
    }

    #[test]
    fn stanzas_count_as_unread_until_a_ping_after_them_is_answered() {
        let mut barriers: Barriers<u32> = Barriers::new("b");
        let sent = now();
        assert_eq!(barriers.next_ping(sent, 0), None);
        // Each ping is a stanza too, counted after the 100 before it.
        let first = barriers.next_ping(sent, 100).expect("stanzas wait");
        assert_eq!(barriers.next_ping(sent, 101), None, "covered");
        let second = barriers.next_ping(sent, 250).unwrap();
        assert_eq!(barriers.unread(300), 300);
        let released = barriers.answered(&first, sent + Duration::from_millis(10));
        assert_eq!(released.unwrap().ahead, 101);
        assert_eq!(barriers.unread(300), 199);
        let released = barriers.answered(&second, sent + Duration::from_millis(20));
        assert_eq!(released.unwrap().ahead, 251, "counted from the start");
        assert_eq!(barriers.unread(300), 49);
        let third = barriers.next_ping(sent, 300).unwrap();
        let released = barriers.answered(&third, sent).unwrap();
        assert_eq!(released.ahead, 50, "what the last answer left");
        assert_eq!(barriers.unread(301), 0);
    }

    #[test]
    fn a_lost_stream_leaves_nothing_unread() {
        let mut barriers: Barriers<u32> = Barriers::new("b");
        barriers.next_ping(now(), 40).unwrap();
        assert_eq!(barriers.unread(70), 70);
        barriers.abandon(70);
        assert_eq!(barriers.unread(70), 0);
        assert_eq!(barriers.next_ping(now(), 70), None);
    }
}
