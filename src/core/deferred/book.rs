//! The open windows and who waits in them. Pure bookkeeping: a recipient
//! waits until their presence meets the window's policy, is sent the
//! message (and is "sending" until the server proves it read it), then is
//! late; whoever still waits when the window ends is missed. An index from
//! user to the windows they wait in makes a presence change cost one
//! lookup, however many windows are open.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use xmpp_parsers::jid::BareJid;

use crate::presence::PresenceBook;
use crate::store::Receipt;
use crate::user_text::UserText;
use crate::xmpp::wire::Addressee;

use super::early::{Early, EarlyReceipts};
pub use super::window::{Receipts, Terms, Window};

/// A window's place in the book.
pub type Slot = u32;

/// What a window opens with.
pub struct Opening {
    pub terms: Terms,
    pub waiting: Vec<(u32, String)>,
    /// Reached before a restart.
    pub late: Vec<(u32, String)>,
    /// Messages sent at fan-out whose receipts are counted, if asked.
    pub receipts: Option<usize>,
    /// Receipts that came before a restart.
    pub receipted: Vec<Receipt>,
    /// Its job's report was confirmed already.
    pub reported: bool,
    /// Opened from the store at start.
    pub restored: bool,
}

#[derive(Debug, Default)]
pub struct Book {
    windows: Vec<Option<Window>>,
    free: Vec<Slot>,
    by_key: HashMap<String, Slot>,
    /// What a window's message ids start with -> the window, for those
    /// counting receipts.
    by_prefix: HashMap<String, Slot>,
    /// User -> each window and position they wait at.
    index: HashMap<Arc<str>, Vec<(Slot, u32)>>,
    /// Receipts for messages of no open window (yet).
    early: EarlyReceipts,
    waiting: usize,
}

impl Book {
    /// Recipients waiting in every window.
    pub fn waiting(&self) -> usize {
        self.waiting
    }

    pub fn is_open(&self, key: &str) -> bool {
        self.by_key.contains_key(key)
    }

    pub fn by_key_mut(&mut self, key: &str) -> Option<&mut Window> {
        let slot = *self.by_key.get(key)?;
        self.get_mut(slot)
    }

    pub fn get(&self, slot: Slot) -> Option<&Window> {
        self.windows.get(slot as usize)?.as_ref()
    }

    pub fn get_mut(&mut self, slot: Slot) -> Option<&mut Window> {
        self.windows.get_mut(slot as usize)?.as_mut()
    }

    /// Opens a window; None if one is open for the key already.
    pub fn open(&mut self, opening: Opening) -> Option<Slot> {
        if self.by_key.contains_key(&opening.terms.key) {
            return None;
        }
        let slot = self.free.pop().unwrap_or(self.windows.len() as Slot);
        let mut waiting = HashMap::with_capacity(opening.waiting.len());
        for (position, user) in opening.waiting {
            let user: Arc<str> = user.into();
            self.index
                .entry(Arc::clone(&user))
                .or_default()
                .push((slot, position));
            waiting.insert(position, user);
        }
        self.waiting += waiting.len();
        let late: Vec<(u32, Arc<str>)> = (opening.late.into_iter())
            .map(|(position, user)| (position, user.into()))
            .collect();
        let names = opening.terms.names;
        let receipts = opening.receipts.map(|expected| Receipts {
            expected,
            got: (opening.receipted.iter())
                .map(|receipt| receipt.position)
                .collect(),
            senders: names.then(|| {
                (opening.receipted.into_iter())
                    .filter_map(|Receipt { position, sender }| Some((position, sender?.into())))
                    .collect()
            }),
        });
        if receipts.is_some() {
            self.by_prefix
                .insert(opening.terms.template.id_prefix().to_string(), slot);
        }
        let key = opening.terms.key.clone();
        let window = Window {
            terms: opening.terms,
            deferred: waiting.len() + late.len(),
            waiting,
            sending: HashMap::new(),
            late,
            receipts,
            possible_duplicates: 0,
            cancelled: false,
            stopped: false,
            reported: opening.reported,
            restored: opening.restored,
            owed_report: None,
            final_report: None,
            closing: None,
            retry_at: None,
        };
        match self.windows.get_mut(slot as usize) {
            Some(free) => *free = Some(window),
            None => self.windows.push(Some(window)),
        }
        self.by_key.insert(key, slot);
        Some(slot)
    }

    /// The messages to send now that `user`'s presence changed: one for
    /// each open window they wait in whose policy they now meet.
    pub fn reachable(
        &mut self,
        user: &BareJid,
        book: &PresenceBook,
        now: Instant,
    ) -> Vec<(Slot, Addressee)> {
        let Some(places) = self.index.get_mut(user.as_str()) else {
            return Vec::new();
        };
        let mut sends = Vec::new();
        places.retain(|&(slot, position)| {
            let Some(Some(window)) = self.windows.get_mut(slot as usize) else {
                return false;
            };
            match window.send(position, book, now) {
                Some(to) => {
                    self.waiting -= 1;
                    sends.push((slot, to));
                    false
                }
                None => true,
            }
        });
        if places.is_empty() {
            self.index.remove(user.as_str());
        }
        sends
    }

    /// Everyone waiting in `slot` whose presence meets its policy now.
    pub fn reachable_in(
        &mut self,
        slot: Slot,
        book: &PresenceBook,
        now: Instant,
    ) -> Vec<(Slot, Addressee)> {
        let Some(Some(window)) = self.windows.get_mut(slot as usize) else {
            return Vec::new();
        };
        let positions: Vec<u32> = (window.waiting.iter())
            .filter(|(_, user)| {
                book.deliverable(UserText(user), window.terms.policy)
                    .is_ok()
            })
            .map(|(position, _)| *position)
            .collect();
        let mut sends = Vec::new();
        for position in positions {
            if let Some(to) = window.send(position, book, now) {
                self.waiting -= 1;
                if let Some(places) = self.index.get_mut(to.user()) {
                    places.retain(|place| *place != (slot, position));
                    if places.is_empty() {
                        self.index.remove(to.user());
                    }
                }
                sends.push((slot, to));
            }
        }
        sends
    }

    /// The server read the message to `position` of `slot`.
    pub fn reached(&mut self, slot: Slot, position: u32) -> bool {
        let Some(window) = self.get_mut(slot) else {
            return false;
        };
        let Some(user) = window.sending.remove(&position) else {
            return false;
        };
        window.late.push((position, user));
        true
    }

    /// The message to `position` of `slot` was written to a stream that
    /// was lost before the server proved it read it: they wait again.
    pub fn unsent(&mut self, slot: Slot, position: u32) {
        let Some(Some(window)) = self.windows.get_mut(slot as usize) else {
            return;
        };
        let Some(user) = window.sending.remove(&position) else {
            return;
        };
        window.possible_duplicates += 1;
        self.index
            .entry(Arc::clone(&user))
            .or_default()
            .push((slot, position));
        window.waiting.insert(position, user);
        self.waiting += 1;
    }

    /// The windows whose final reports are due at `now`.
    pub fn due(&self, now: Instant) -> Vec<Slot> {
        (self.windows.iter().enumerate())
            .filter_map(|(slot, window)| {
                let window = window.as_ref()?;
                window.is_due(now).then_some(slot as Slot)
            })
            .collect()
    }

    /// When the next window's final report falls due.
    pub fn next_due(&self, now: Instant) -> Option<Instant> {
        (self.windows.iter().flatten())
            .filter_map(|window| window.due_at(now))
            .min()
    }

    /// The window's final report went out: nobody more is sent anything.
    pub fn stop_waiting(&mut self, slot: Slot) {
        let Some(Some(window)) = self.windows.get_mut(slot as usize) else {
            return;
        };
        if std::mem::replace(&mut window.stopped, true) {
            return;
        }
        for user in window.waiting.values() {
            if let Some(places) = self.index.get_mut(user) {
                places.retain(|(s, _)| *s != slot);
                if places.is_empty() {
                    self.index.remove(user);
                }
            }
        }
        self.waiting -= window.waiting.len();
    }

    /// The report of the job `key` was confirmed: its final report may
    /// follow.
    pub fn reported(&mut self, key: &str) {
        let slot = self.by_key.get(key).copied();
        if let Some(window) = slot.and_then(|slot| self.get_mut(slot)) {
            window.reported = true;
        }
    }

    /// The window whose final report publish `id` is part of.
    pub fn closing_with(&self, id: u64) -> Option<Slot> {
        (self.windows.iter().enumerate())
            .find(|(_, window)| {
                let ids = window.as_ref().and_then(|w| w.closing.as_ref());
                ids.is_some_and(|ids| ids.contains(&id))
            })
            .map(|(slot, _)| slot as Slot)
    }

    /// Every window whose final report awaits a confirm from the broker
    /// connection that is gone: published again.
    pub fn closing_slots(&self) -> Vec<Slot> {
        (self.windows.iter().enumerate())
            .filter(|(_, window)| window.as_ref().is_some_and(|w| w.closing.is_some()))
            .map(|(slot, _)| slot as Slot)
            .collect()
    }

    /// A receipt from `sender` (a bare JID) for the message with `id` at
    /// `now`: the window and position it answers, if it is new and the
    /// window still counts receipts. A window stops counting at its end,
    /// even if its final report waits (for the broker, say): what the
    /// report counts does not depend on when it could go.
    ///
    /// One for no open window is held until one opens (see
    /// [`Book::count_early`]).
    pub fn receipt(&mut self, id: &str, sender: &str, now: Instant) -> Option<(Slot, u32)> {
        let at = id.rfind('.')?;
        let (prefix, position) = (&id[..=at], id[at + 1..].parse::<u32>().ok()?);
        let Some(&slot) = self.by_prefix.get(prefix) else {
            self.early.hold(id, sender, now);
            return None;
        };
        self.count(slot, position, sender, now)
    }

    /// The receipts held for the messages of `slot`'s window, which just
    /// opened, counted if new and if they came before its end: each with
    /// its position.
    pub fn count_early(&mut self, slot: Slot) -> Vec<(u32, Early)> {
        let Some(window) = self.get(slot).filter(|w| w.receipts.is_some()) else {
            return Vec::new();
        };
        let prefix = window.terms.template.id_prefix().to_string();
        let mut counted = Vec::new();
        for early in self.early.take(&prefix) {
            let position = early.id[prefix.len()..].parse::<u32>().ok();
            let position =
                position.filter(|p| self.count(slot, *p, &early.sender, early.at).is_some());
            counted.extend(position.map(|position| (position, early)));
        }
        counted
    }

    /// A receipt from `sender` that came at `now`, for the message to
    /// `position` of `slot`.
    fn count(
        &mut self,
        slot: Slot,
        position: u32,
        sender: &str,
        now: Instant,
    ) -> Option<(Slot, u32)> {
        let window = self.get_mut(slot)?;
        if window.stopped || window.terms.until <= now {
            return None;
        }
        let receipts = window.receipts.as_mut()?;
        if !receipts.got.insert(position) {
            return None;
        }
        if let Some(senders) = &mut receipts.senders {
            senders.push((position, sender.into()));
        }
        Some((slot, position))
    }

    /// The window's final report was confirmed: it is gone.
    pub fn remove(&mut self, slot: Slot) -> Option<Window> {
        let window = self.windows.get_mut(slot as usize)?.take()?;
        self.by_key.remove(&window.terms.key);
        self.by_prefix.remove(window.terms.template.id_prefix());
        self.free.push(slot);
        Some(window)
    }
}
