//! The online resources of one user, packed into one allocation: a million
//! online users each with a boxed slice of resources and a boxed name in
//! each cost two heap blocks per user (32 bytes apiece at the least, with
//! glibc), for what is nearly always one short name and two bytes of
//! presence.

use super::{ResourcePresence, Show};

/// Bytes before each name: its `<show/>`, its priority and its length
/// (little-endian).
const HEAD: usize = 4;

/// Each resource as `[show, priority, length (2 bytes), name]`, back to
/// back; no resource, no allocation. Names are valid UTF-8 (written from
/// `&str`) of at most 1023 bytes (RFC 7622's limit, which the JID parser
/// holds them to), so a length fits in two bytes.
#[derive(Debug, Default)]
pub(super) struct Resources(Box<[u8]>);

impl Resources {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Each resource's name and presence, in the order they came online.
    pub fn iter(&self) -> impl Iterator<Item = (&str, ResourcePresence)> {
        Packed(&self.0).map(|(name, presence)| {
            let name = std::str::from_utf8(name).expect("a resource's name is written from a str");
            (name, presence)
        })
    }

    /// Each resource's presence.
    pub fn presences(&self) -> impl Iterator<Item = ResourcePresence> + '_ {
        Packed(&self.0).map(|(_, presence)| presence)
    }

    /// Sets the presence of resource `name`, adding it if it is new;
    /// returns the presence it replaced.
    pub fn set(&mut self, name: &str, presence: ResourcePresence) -> Option<ResourcePresence> {
        if let Some((at, previous)) = self.find(name) {
            self.0[at] = encode_show(presence.show);
            self.0[at + 1] = presence.priority.to_le_bytes()[0];
            return Some(previous);
        }
        let length = u16::try_from(name.len()).expect("a resource's name is under 1024 bytes");
        // Grown to the exact size: a vector's growth would round it up.
        let mut grown = Vec::with_capacity(self.0.len() + HEAD + name.len());
        grown.extend_from_slice(&self.0);
        grown.push(encode_show(presence.show));
        grown.push(presence.priority.to_le_bytes()[0]);
        grown.extend_from_slice(&length.to_le_bytes());
        grown.extend_from_slice(name.as_bytes());
        self.0 = grown.into_boxed_slice();
        None
    }

    /// Removes resource `name`; whether it was online.
    pub fn remove(&mut self, name: &str) -> bool {
        let Some((at, _)) = self.find(name) else {
            return false;
        };
        let end = at + HEAD + name.len();
        let mut kept = Vec::with_capacity(self.0.len() - (end - at));
        kept.extend_from_slice(&self.0[..at]);
        kept.extend_from_slice(&self.0[end..]);
        self.0 = kept.into_boxed_slice();
        true
    }

    /// Where resource `name` starts, and its presence.
    fn find(&self, name: &str) -> Option<(usize, ResourcePresence)> {
        let mut at = 0;
        for (entry, presence) in Packed(&self.0) {
            if entry == name.as_bytes() {
                return Some((at, presence));
            }
            at += HEAD + entry.len();
        }
        None
    }
}

/// Reads packed resources one by one.
struct Packed<'a>(&'a [u8]);

impl<'a> Iterator for Packed<'a> {
    type Item = (&'a [u8], ResourcePresence);

    fn next(&mut self) -> Option<Self::Item> {
        let (head, rest) = self.0.split_first_chunk::<HEAD>()?;
        let [show, priority, length @ ..] = *head;
        let (name, rest) = rest.split_at(usize::from(u16::from_le_bytes(length)));
        self.0 = rest;
        let presence = ResourcePresence {
            show: decode_show(show),
            priority: i8::from_le_bytes([priority]),
        };
        Some((name, presence))
    }
}

fn encode_show(show: Show) -> u8 {
    match show {
        Show::Online => 0,
        Show::Chat => 1,
        Show::Away => 2,
        Show::Xa => 3,
        Show::Dnd => 4,
    }
}

fn decode_show(byte: u8) -> Show {
    match byte {
        0 => Show::Online,
        1 => Show::Chat,
        2 => Show::Away,
        3 => Show::Xa,
        _ => Show::Dnd,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const SHOWS: [Show; 5] = [Show::Online, Show::Chat, Show::Away, Show::Xa, Show::Dnd];

    fn presence(show: usize, priority: i8) -> ResourcePresence {
        ResourcePresence {
            show: SHOWS[show],
            priority,
        }
    }

    #[test]
    fn resources_come_and_go_by_name() {
        let mut resources = Resources::default();
        assert!(resources.is_empty());
        assert_eq!(resources.set("desk", presence(0, 5)), None);
        assert_eq!(resources.set("phone", presence(4, -1)), None);
        assert_eq!(resources.set("desk", presence(2, 0)), Some(presence(0, 5)));
        assert_eq!(
            resources.iter().collect::<Vec<_>>(),
            [("desk", presence(2, 0)), ("phone", presence(4, -1))]
        );
        assert!(!resources.remove("laptop"));
        assert!(resources.remove("desk"));
        assert_eq!(resources.len(), 1);
        assert!(resources.remove("phone"));
        assert!(resources.is_empty());
    }

    #[test]
    fn one_resource_takes_its_name_and_four_bytes() {
        let mut resources = Resources::default();
        resources.set("Ünïcode ✓", presence(1, 127));
        assert_eq!(resources.0.len(), HEAD + "Ünïcode ✓".len());
        assert_eq!(
            resources.iter().next(),
            Some(("Ünïcode ✓", presence(1, 127)))
        );
    }

    /// What a resource may be named in these tests: few names, so that
    /// they repeat; one a prefix of another; one empty.
    fn name() -> impl Strategy<Value = String> {
        let names = ["", "a", "ab", "b", "phone", "ä✓"].map(str::to_owned);
        prop::sample::select([names.as_slice(), &["x".repeat(1023)]].concat())
    }

    proptest! {
        /// Packed resources read back as a list of (name, presence) kept
        /// the plain way would.
        #[test]
        fn packed_resources_are_what_a_list_keeps(
            changes in prop::collection::vec((name(), prop::option::of((0..5usize, any::<i8>()))), 0..40)
        ) {
            let mut resources = Resources::default();
            let mut list: Vec<(String, ResourcePresence)> = Vec::new();
            for (name, change) in changes {
                let known = list.iter().position(|(n, _)| *n == name);
                match change {
                    Some((show, priority)) => {
                        let now = presence(show, priority);
                        let before = resources.set(&name, now);
                        match known {
                            Some(at) => {
                                prop_assert_eq!(before, Some(list[at].1));
                                list[at].1 = now;
                            }
                            None => {
                                prop_assert_eq!(before, None);
                                list.push((name, now));
                            }
                        }
                    }
                    None => {
                        prop_assert_eq!(resources.remove(&name), known.is_some());
                        if let Some(at) = known {
                            list.remove(at);
                        }
                    }
                }
                let read: Vec<(String, ResourcePresence)> =
                    resources.iter().map(|(n, p)| (n.to_owned(), p)).collect();
                prop_assert_eq!(&read, &list);
                prop_assert_eq!(resources.len(), list.len());
                prop_assert_eq!(resources.is_empty(), list.is_empty());
            }
        }
    }
}
