//! The soak's users: one swarm logged in at a time, logged in again after
//! each server restart, their receipts kept across logins.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::servers::Server;
use crate::swarm::{Logins, Swarm};

/// Login attempts after a server restart: its c2s port may take logins a
/// moment after the server says it is up.
const LOGIN_ATTEMPTS: usize = 3;
/// How long the swarm's counter must stand still to count as settled.
const SETTLED: Duration = Duration::from_secs(2);

pub struct Users {
    names: Vec<String>,
    in_flight: usize,
    epoch: Instant,
    swarm: Option<Swarm>,
    /// Per user: the sequence numbers received by earlier logins.
    receipts: Vec<Vec<u64>>,
}

impl Users {
    pub async fn log_in(
        server: &Server,
        names: Vec<String>,
        in_flight: usize,
        epoch: Instant,
    ) -> Result<Users, String> {
        let mut users = Users {
            receipts: vec![Vec::new(); names.len()],
            names,
            in_flight,
            epoch,
            swarm: None,
        };
        users.log_in_again(server).await?;
        Ok(users)
    }

    /// Collects what the current logins received (their sessions are over
    /// or are closed now) and logs everyone in again.
    pub async fn log_in_again(&mut self, server: &Server) -> Result<(), String> {
        self.collect().await;
        let mut attempt = 1;
        loop {
            let logins = Logins::available(server.api(), &self.names, self.in_flight);
            match Swarm::log_in(logins, self.epoch).await {
                Ok(swarm) => {
                    self.swarm = Some(swarm);
                    return Ok(());
                }
                Err(e) if attempt >= LOGIN_ATTEMPTS => return Err(e),
                Err(e) => eprintln!("soak: login attempt {attempt}: {e}; trying again"),
            }
            attempt += 1;
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    pub fn count(&self) -> usize {
        self.names.len()
    }

    /// Messages the current logins received so far.
    pub fn received(&self) -> u64 {
        self.swarm
            .as_ref()
            .map_or(0, |swarm| swarm.counters().received.load(Ordering::Relaxed))
    }

    /// Waits until no message arrived for a moment (at most `limit`), so
    /// that what the server already took reaches the users.
    pub async fn settle(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut last = (self.received(), Instant::now());
        while Instant::now() < deadline && last.1.elapsed() < SETTLED {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = self.received();
            if now != last.0 {
                last = (now, Instant::now());
            }
        }
    }

    async fn collect(&mut self) {
        let Some(swarm) = self.swarm.take() else {
            return;
        };
        for (user, got) in swarm.finish().await.into_iter().enumerate() {
            self.receipts[user].extend(got.iter().map(|receipt| receipt.seq));
        }
    }

    /// Logs everyone out; per user, every sequence number received.
    pub async fn finish(mut self) -> Vec<Vec<u64>> {
        self.collect().await;
        self.receipts
    }
}
