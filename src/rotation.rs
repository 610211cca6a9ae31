//! The nodes of a cluster in turn, round robin: the broker link and the
//! XMPP dialer each connect to one node at a time and, after a failed
//! attempt or a lost connection, go on to the next.

#[derive(Debug)]
pub struct Rotation<T> {
    nodes: Vec<T>,
    next: usize,
}

impl<T> Rotation<T> {
    /// `nodes` is never empty: the configuration gives at least one.
    pub fn new(nodes: Vec<T>) -> Rotation<T> {
        assert!(!nodes.is_empty(), "a rotation needs at least one node");
        Rotation { nodes, next: 0 }
    }

    /// Where to connect now.
    pub fn next(&mut self) -> &T {
        let at = self.next % self.nodes.len();
        self.next = at + 1;
        &self.nodes[at]
    }

    /// The node [`Rotation::next`] gave last (the first before any).
    pub fn current(&self) -> &T {
        &self.nodes[self.next.saturating_sub(1)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rotation_goes_round_the_nodes_in_order() {
        let mut rotation = Rotation::new(vec!["a", "b", "c"]);
        assert_eq!(rotation.current(), &"a");
        let tried: Vec<&str> = (0..7).map(|_| *rotation.next()).collect();
        assert_eq!(tried, ["a", "b", "c", "a", "b", "c", "a"]);
        assert_eq!(rotation.current(), &"a");
        rotation.next();
        assert_eq!(rotation.current(), &"b");
        let mut alone = Rotation::new(vec!["a"]);
        let first = *alone.next();
        assert_eq!((first, *alone.next()), ("a", "a"));
    }
}
