//! The presence flood: M other users log in, stay a moment and log out, in
//! a loop, until stopped or until a deadline (it always ends by itself).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use herald_testkit::c2s::raw::{self, Show};
use herald_testkit::draw::Draw;
use herald_testkit::server::XmppServer;

/// How long a churning user stays online per cycle: 100 ms to 1 s.
const STAY_MS: (u64, u64) = (100, 1000);

/// Running churn. Dropping it stops the loops.
pub struct Churn {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    stats: Arc<ChurnStats>,
}

#[derive(Default)]
pub struct ChurnStats {
    /// Completed login/logout cycles.
    pub cycles: AtomicU64,
    /// Failed logins.
    pub errors: AtomicU64,
}

impl Churn {
    /// Starts one loop per user on `server`; at most `in_flight` logins
    /// at a time; every loop ends at `until` at the latest.
    pub fn start(
        server: &dyn XmppServer,
        users: &[String],
        in_flight: usize,
        until: Instant,
    ) -> Churn {
        let addr = server.c2s_addr();
        let domain = server.domain();
        let (stop, stop_rx) = watch::channel(false);
        let stats = Arc::new(ChurnStats::default());
        let permits = Arc::new(Semaphore::new(in_flight.max(1)));
        let tasks = users
            .iter()
            .enumerate()
            .map(|(i, user)| {
                let (user, password) = (user.clone(), server.password(user).to_string());
                let addr = addr.clone();
                let domain = domain.to_string();
                let stats = Arc::clone(&stats);
                let permits = Arc::clone(&permits);
                let mut stop = stop_rx.clone();
                tokio::spawn(async move {
                    let mut rng = Draw::new(0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1));
                    loop {
                        if *stop.borrow() || Instant::now() >= until {
                            return;
                        }
                        let login = {
                            let Ok(_permit) = permits.acquire().await else {
                                return;
                            };
                            raw::log_in(&addr, &domain, &user, &password, Show::Available).await
                        };
                        let mut stream = match login {
                            Ok(stream) => stream,
                            Err(_) => {
                                stats.errors.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(100)).await;
                                continue;
                            }
                        };
                        let stay = Duration::from_millis(rng.between(STAY_MS.0, STAY_MS.1));
                        tokio::select! {
                            _ = tokio::time::sleep(stay) => {}
                            _ = tokio::time::sleep_until(until) => {}
                            _ = stop.changed() => {}
                        }
                        let _ = stream.write_all(b"</stream:stream>").await;
                        let _ = stream.flush().await;
                        drop(stream);
                        stats.cycles.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        Churn { stop, tasks, stats }
    }

    pub fn stats(&self) -> &ChurnStats {
        &self.stats
    }

    /// Stops every loop and waits for the users to be logged out.
    pub async fn stop(self) -> u64 {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        self.stats.cycles.load(Ordering::Relaxed)
    }
}
