//! The faults a world injects: a stream cut, a lost broker, Herald's
//! crash, a stalled or hostile server, a refused publish or commit; and
//! the reconnects after them.

use herald::core::Input;

use super::World;

impl World {
    pub(super) fn fault(&mut self) -> Result<(), String> {
        let now = self.now;
        match self.rng.below(6) {
            0 => self.server.stall(&mut self.rng, now),
            1 if self.server.stream.is_some() => {
                self.trace
                    .push(format!("{:>6} ms  FAULT stream cut", self.elapsed()));
                self.server.stream = None;
                self.stream_back_at = Some(now + self.rng.millis(3_000));
                return self.input(Input::StreamLost);
            }
            2 if self.broker.connected => {
                self.trace
                    .push(format!("{:>6} ms  FAULT broker lost", self.elapsed()));
                let generation = self.broker.generation;
                // A delivery may still sit in the shell's channel when the
                // link reports the loss: it reaches the core after it.
                let late = self
                    .rng
                    .chance(500)
                    .then(|| self.broker.deliver(self.wall_clock(), [true, true]));
                self.broker.lose();
                self.broker_back_at = Some(now + self.rng.millis(3_000));
                self.input(Input::BrokerLost { generation })?;
                if let Some(Some(delivery)) = late {
                    return self.input(Input::Delivery(delivery));
                }
            }
            3 if self.rng.chance(400) => return self.crash(),
            4 => self.server.hostile(&mut self.rng, now),
            _ => {
                // The next publish or commit fails.
                if self.rng.chance(500) {
                    if let Some(publish) = self.broker.refuse_publish() {
                        return self.input(Input::PublishRefused { publish });
                    }
                } else if let Some(batch) = self.store.in_flight.take() {
                    let error = "disk full".to_string();
                    return self.input(Input::CommitFailed { batch, error });
                }
            }
        }
        Ok(())
    }

    /// Herald dies: its core, its stream and its broker connection are
    /// gone, and so is every store batch not committed.
    pub(super) fn crash(&mut self) -> Result<(), String> {
        self.trace
            .push(format!("{:>6} ms  FAULT crash", self.elapsed()));
        self.core = None;
        self.ledger.on_crash(&self.store, self.now);
        self.store.in_flight = None;
        self.groups.on_crash(&self.store)?;
        self.server.stream = None;
        self.broker.lose();
        self.stream_back_at = Some(self.now + self.rng.millis(2_000));
        self.broker_back_at = Some(self.now + self.rng.millis(2_000));
        self.start_core();
        Ok(())
    }

    pub(super) fn reconnect(&mut self) -> Result<(), String> {
        if self.stream_back_at.is_some_and(|at| at <= self.now) {
            self.stream_back_at = None;
            self.server.open_stream(self.now);
            self.input(Input::StreamUp)?;
        }
        if self.broker_back_at.is_some_and(|at| at <= self.now) {
            self.broker_back_at = None;
            let generation = self.broker.connect();
            self.input(Input::BrokerUp { generation })?;
        }
        Ok(())
    }
}
