//! Injecting the soak's faults into the running parts, one at a time, in
//! the schedule's order.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use herald_testkit::cut_proxy::{CutProxy, Direction};
use herald_testkit::rabbitmq::PrivateBroker;

use super::ledger::Shared;
use super::schedule::{Fault, FaultKind};
use super::users::Users;
use crate::component::{Component, LOG_LINES};
use crate::servers::Server;

/// Longest wait for the users' messages to settle before a server restart.
const SETTLE_LIMIT: Duration = Duration::from_secs(30);
/// What Herald logs when it has its broker connection back.
const AMQP_CONNECTED: &str = "AMQP connected";

/// Everything a fault acts on.
pub struct Parts<'a> {
    pub herald: &'a mut Component,
    pub server: &'a mut Server,
    pub proxy: &'a CutProxy,
    /// The soak's own broker node, when broker kills are among the faults.
    pub broker: Option<&'a mut PrivateBroker>,
    pub users: &'a mut Users,
    pub ledger: Shared,
    pub epoch: Instant,
    /// Longest wait for Herald to see every user online again.
    pub timeout: Duration,
}

impl Parts<'_> {
    /// Applies the faults at their times from `start`; returns how many of
    /// each kind were injected.
    pub async fn inject(
        &mut self,
        faults: &[Fault],
        start: Instant,
    ) -> Result<BTreeMap<FaultKind, usize>, String> {
        let mut injected = BTreeMap::new();
        for fault in faults {
            tokio::time::sleep_until((start + fault.at).into()).await;
            eprintln!(
                "soak: {:>4}s {}",
                start.elapsed().as_secs(),
                fault.kind.name()
            );
            self.apply(fault).await?;
            *injected.entry(fault.kind).or_default() += 1;
        }
        Ok(injected)
    }

    async fn apply(&mut self, fault: &Fault) -> Result<(), String> {
        match fault.kind {
            FaultKind::HeraldKill => self.herald.kill_and_restart().await,
            FaultKind::StreamCut => {
                // Herald writes messages; the server answers the ping
                // behind each job.
                let (direction, pattern, nth) = if fault.herald_side {
                    (Direction::HeraldToServer, "<message", fault.nth)
                } else {
                    (Direction::ServerToHerald, "<iq", 1 + fault.nth % 3)
                };
                self.proxy.arm(direction, pattern, nth);
                Ok(())
            }
            FaultKind::ServerRestart => self.restart_server().await,
            FaultKind::BrokerKill => self.kill_broker().await,
        }
    }

    /// SIGKILL of the broker node and its boot at once on the same data,
    /// as a supervisor would; then waits until Herald has connected again
    /// by itself and shows its log lines of it. The publisher and the
    /// report reader connect again on their own.
    async fn kill_broker(&mut self) -> Result<(), String> {
        let broker = self
            .broker
            .as_deref_mut()
            .ok_or("broker-kill needs the soak's own broker node")?;
        let connected_before = self.herald.log_lines_with(AMQP_CONNECTED).pop();
        let boot = Instant::now();
        tokio::task::block_in_place(|| {
            broker.kill();
            broker.start_again();
        });
        eprintln!(
            "soak:       the broker node was back in {:.1} s",
            boot.elapsed().as_secs_f64()
        );
        let deadline = Instant::now() + self.timeout;
        loop {
            self.herald.check_running()?;
            let connected = self.herald.log_lines_with(AMQP_CONNECTED).pop();
            if connected.is_some() && connected != connected_before {
                let log = self.herald.log_tail(LOG_LINES);
                let since = connected_before
                    .and_then(|line| log.find(&line).map(|at| at + line.len()))
                    .unwrap_or(0);
                for line in log[since..].lines().filter(|line| line.contains("AMQP")) {
                    eprintln!("soak:       herald: {line}");
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "Herald did not connect to the broker again within {:?}",
                    self.timeout
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Ends the steady stretch, lets the users get what the server took,
    /// restarts it, logs the users in again and starts a new stretch once
    /// Herald has seen them all.
    async fn restart_server(&mut self) -> Result<(), String> {
        let now = || self.epoch.elapsed().as_nanos() as u64;
        if let Some(stretch) = self.ledger.lock().unwrap().steady.last_mut() {
            stretch.1 = Some(now());
        }
        self.users.settle(SETTLE_LIMIT).await;
        tokio::task::block_in_place(|| self.server.restart());
        self.users.log_in_again(self.server).await?;
        let everyone = self.users.count();
        self.herald
            .wait_online_resources(everyone, self.timeout)
            .await?;
        self.ledger.lock().unwrap().steady.push((now(), None));
        Ok(())
    }
}
