//! Acknowledging many jobs with one frame. A consumer channel's delivery
//! tags grow by one per delivery, and `basic.ack` with `multiple` settles
//! every outstanding tag up to the one it names. Jobs finish nearly in the
//! order they came (their messages are written in order and barriers are
//! answered in order), so most finished jobs can wait for the jobs before
//! them and go in one ack: fewer frames for Herald and for the broker.
//! Pure bookkeeping: the core emits what it says.

use std::collections::VecDeque;

/// One delivery's place in the window.
#[derive(Debug)]
enum Slot<A> {
    /// Taken, not yet settled.
    Open,
    /// Done; its acknowledger, to be acknowledged with those before it.
    Done(A),
    /// Given back to the queue with its own nack: no longer outstanding.
    Requeued,
}

/// What to send for the jobs a settlement released.
#[derive(Debug, PartialEq, Eq)]
pub enum Ack<A> {
    /// Nothing yet: an earlier job is still open.
    Wait,
    /// `basic.ack` with `multiple` on this acknowledger: it and every
    /// outstanding delivery before it.
    UpTo(A),
}

/// The outstanding deliveries of one consumer channel, in delivery order.
#[derive(Debug)]
pub struct AckWindow<A> {
    slots: VecDeque<(u64, Slot<A>)>,
}

impl<A> Default for AckWindow<A> {
    fn default() -> Self {
        AckWindow {
            slots: VecDeque::new(),
        }
    }
}

impl<A> AckWindow<A> {
    /// A delivery arrived (tags only grow on a channel).
    pub fn taken(&mut self, tag: u64) {
        self.slots.push_back((tag, Slot::Open));
    }

    /// The job `tag` is done. `None` if `tag` is not outstanding here.
    pub fn done(&mut self, tag: u64, acker: A) -> Option<Ack<A>> {
        self.settle(tag, Slot::Done(acker))
    }

    /// The job `tag` was nacked back to the queue on its own; the jobs after
    /// it may now be acknowledged past it. `None` if `tag` is not outstanding.
    pub fn requeued(&mut self, tag: u64) -> Option<Ack<A>> {
        self.settle(tag, Slot::Requeued)
    }

    fn settle(&mut self, tag: u64, settled: Slot<A>) -> Option<Ack<A>> {
        let index = self.slots.binary_search_by_key(&tag, |(t, _)| *t).ok()?;
        let slot = &mut self.slots[index].1;
        if !matches!(slot, Slot::Open) {
            return None;
        }
        *slot = settled;
        Some(self.release())
    }

    /// Drops the settled run at the front; the newest done job in it acks
    /// the run.
    fn release(&mut self) -> Ack<A> {
        let mut newest = None;
        while let Some((_, slot)) = self.slots.front() {
            if matches!(slot, Slot::Open) {
                break;
            }
            if let Some((_, Slot::Done(acker))) = self.slots.pop_front() {
                newest = Some(acker);
            }
        }
        newest.map_or(Ack::Wait, Ack::UpTo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(tags: impl IntoIterator<Item = u64>) -> AckWindow<u64> {
        let mut window = AckWindow::default();
        for tag in tags {
            window.taken(tag);
        }
        window
    }

    #[test]
    fn jobs_done_in_order_are_acknowledged_one_by_one() {
        let mut w = window(1..=3);
        assert_eq!(w.done(1, 1), Some(Ack::UpTo(1)));
        assert_eq!(w.done(2, 2), Some(Ack::UpTo(2)));
        assert_eq!(w.slots.len(), 1);
    }

    #[test]
    fn a_job_done_early_waits_for_the_one_before_and_goes_with_it() {
        let mut w = window(1..=4);
        assert_eq!(w.done(2, 2), Some(Ack::Wait));
        assert_eq!(w.done(3, 3), Some(Ack::Wait));
        assert_eq!(w.done(1, 1), Some(Ack::UpTo(3)), "one ack covers 1 to 3");
        assert_eq!(w.slots.len(), 1, "4 is still open");
    }

    #[test]
    fn a_requeued_job_lets_later_ones_be_acknowledged_past_it() {
        let mut w = window(1..=3);
        assert_eq!(w.done(2, 2), Some(Ack::Wait));
        assert_eq!(w.requeued(1), Some(Ack::UpTo(2)));
        // Nothing done in the run: nothing to send.
        assert_eq!(w.requeued(3), Some(Ack::Wait));
        assert_eq!(w.slots.len(), 0);
    }

    #[test]
    fn unknown_or_already_settled_tags_change_nothing() {
        let mut w = window([5, 6]);
        assert_eq!(w.done(4, 4), None);
        assert_eq!(w.done(6, 6), Some(Ack::Wait));
        assert_eq!(w.done(6, 60), None);
        assert_eq!(w.requeued(6), None);
        assert_eq!(w.slots.len(), 2);
    }
}
