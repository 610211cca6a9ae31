//! One measured run: broker names, server, users, component, swarm, churn,
//! publisher, receipts, reports, resource use; everything started here is
//! stopped here.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::broker::{Broker, Names};
use crate::churn::Churn;
use crate::component::{Component, ComponentKind, ERROR_LOG_LINES};
use crate::cpu::CpuWindows;
use crate::herald_config::herald_config;
use crate::presence_check;
use crate::procstat;
use crate::publisher::{self, Plan};
use crate::report::{tally, RunResult};
use crate::servers::{Population, Server, ServerKind};
use crate::swarm::{Logins, Swarm};
use herald_testkit::c2s::raw::Show;
use herald_testkit::herald::herald_bin;
use herald_testkit::server::XmppServer;

/// The shape of one run.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub scenario: String,
    pub server: ServerKind,
    /// ejabberd nodes joined into one cluster (1: a single server).
    pub nodes: usize,
    pub component: ComponentKind,
    pub run: usize,
    pub users: usize,
    pub away: usize,
    pub churn: usize,
    pub jobs: u64,
    pub recipients_per_job: usize,
}

/// How runs are carried out (the same for every run of an invocation).
#[derive(Debug, Clone)]
pub struct Settings {
    pub amqp_url: String,
    pub herald_bin: Option<PathBuf>,
    /// Herald's `amqp.prefetch`; `None` keeps Herald's default.
    pub herald_prefetch: Option<u16>,
    pub baseline_dir: PathBuf,
    pub baseline_prefetch: u32,
    /// Jobs per second; `None` for full speed.
    pub rate: Option<f64>,
    /// AMQP channels the jobs are published on at once.
    pub publish_channels: usize,
    pub logins_in_flight: usize,
    /// Churn runs this long before the first job is published.
    pub churn_warmup: Duration,
    /// Give up when no message arrived for this long.
    pub idle_timeout: Duration,
    /// Give up this long after the first publish in any case.
    pub timeout: Duration,
    /// Pause the component (SIGSTOP) while all jobs are published, then
    /// time it from its resume: its own rate, without the publisher's.
    pub prefill: bool,
}

/// Carries out one run. Failures become a result with `error` set.
pub async fn run(spec: &RunSpec, settings: &Settings) -> RunResult {
    let mut result = RunResult::new(&spec.scenario, spec.server, spec.component.name(), spec.run);
    result.server = server_label(spec.server, spec.nodes);
    result.users = spec.users;
    result.away = spec.away;
    result.churn = spec.churn;
    result.jobs = spec.jobs;
    result.recipients_per_job = spec.recipients_per_job;
    result.expected = expected_messages(spec);
    result.prefilled = settings.prefill;
    if let Err(e) = measure(spec, settings, &mut result).await {
        result.error = Some(e);
    }
    result
}

/// The server as results name it: `ejabberd`, or `ejabberd x3` for a
/// cluster of three nodes.
pub fn server_label(server: ServerKind, nodes: usize) -> String {
    match nodes {
        1 => server.name().to_string(),
        nodes => format!("{} x{nodes}", server.name()),
    }
}

/// Users `0..away` are away; every job reaches the available ones among
/// its recipients.
fn expected_messages(spec: &RunSpec) -> u64 {
    (0..spec.jobs)
        .map(|seq| {
            publisher::recipients(seq, spec.recipients_per_job, spec.users)
                .filter(|&u| u >= spec.away)
                .count() as u64
        })
        .sum()
}

/// The broker's port in an AMQP URL (`amqp://user:pass@host:port/vhost`).
pub fn broker_port(url: &str) -> u16 {
    let default = if url.starts_with("amqps:") {
        5671
    } else {
        5672
    };
    let authority = url.split("://").nth(1).unwrap_or(url);
    let host_port = authority.split('/').next().unwrap_or("");
    let host_port = host_port.rsplit('@').next().unwrap_or(host_port);
    host_port
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or(default)
}

/// The run's queues, exchange and report consumer come first and go last:
/// every report the component publishes is counted.
async fn measure(
    spec: &RunSpec,
    settings: &Settings,
    result: &mut RunResult,
) -> Result<(), String> {
    let broker = Broker::connect(&settings.amqp_url, Names::unique("herald-loadtest")).await?;
    let outcome = measure_with(spec, settings, result, &broker).await;
    broker.clean_up().await;
    outcome
}

async fn measure_with(
    spec: &RunSpec,
    settings: &Settings,
    result: &mut RunResult,
    broker: &Broker,
) -> Result<(), String> {
    let epoch = Instant::now();
    let population = Population::new(spec.users, spec.churn);
    let kind = spec.server;
    let provision_start = Instant::now();
    let mut server = match spec.nodes {
        1 => Server::launch(kind, &population).await?,
        nodes => Server::launch_cluster(nodes, &population).await?,
    };
    eprintln!(
        "  {} up with {} users in {:.1} s",
        server_label(kind, spec.nodes),
        spec.users + spec.churn,
        provision_start.elapsed().as_secs_f64()
    );
    let server_pids = server.pids();
    if server_pids.len() != spec.nodes {
        return Err("a server node has no pid".into());
    }
    let api = server.api();
    let xmpp = server.xmpp_target();
    let c2s_addrs = server.c2s_addrs();
    let component_addrs = server.component_addrs();

    let outcome = async {
        let component = match spec.component {
            kind @ (ComponentKind::Herald | ComponentKind::HeraldEveryNode) => {
                let bin = herald_bin(settings.herald_bin.clone())?;
                let mut config = herald_config(&xmpp, broker.url(), broker.names());
                if let Some(prefetch) = settings.herald_prefetch {
                    config.amqp.prefetch = prefetch;
                }
                if component_addrs.len() > 1 {
                    // One connection, to the first node, the others for
                    // failover; or one to each.
                    (config.xmpp.host, config.xmpp.port) = (None, None);
                    config.xmpp.servers = component_addrs.clone();
                    config.xmpp.connect_every_node = kind == ComponentKind::HeraldEveryNode;
                }
                // Nothing consumes them here.
                config.amqp.presence_events = false;
                Component::start_herald(&bin, &config, &std::env::temp_dir())
                    .await?
                    .measured_as(kind)
            }
            ComponentKind::Baseline => {
                Component::start_baseline(
                    &settings.baseline_dir,
                    &xmpp,
                    broker.url(),
                    broker.names(),
                    settings.baseline_prefetch,
                )
                .await?
            }
        };
        let run = Run {
            spec,
            settings,
            component: &component,
            server: api,
            c2s_addrs: &c2s_addrs,
            server_pids: &server_pids,
            epoch,
        };
        let outcome = run.drive(result, &population, broker).await;
        let outcome = outcome.map_err(|e| {
            format!(
                "{e}\n--- last lines of {} ---\n{}",
                component.kind().name(),
                component.log_tail(ERROR_LOG_LINES)
            )
        });
        component.stop().await;
        outcome
    }
    .await;
    server.stop();
    outcome
}

/// What a started run is made of.
struct Run<'a> {
    spec: &'a RunSpec,
    settings: &'a Settings,
    component: &'a Component,
    server: &'a dyn XmppServer,
    /// The swarm's users are spread over these.
    c2s_addrs: &'a [String],
    server_pids: &'a [u32],
    epoch: Instant,
}

impl Run<'_> {
    async fn drive(
        &self,
        result: &mut RunResult,
        population: &Population,
        broker: &Broker,
    ) -> Result<(), String> {
        let Run {
            spec,
            settings,
            component,
            server,
            c2s_addrs,
            server_pids,
            epoch,
        } = *self;
        let login_start = Instant::now();
        let logins = Logins {
            server,
            c2s_addrs: c2s_addrs.to_vec(),
            users: population
                .users
                .iter()
                .enumerate()
                .map(|(i, u)| {
                    let show = if i < spec.away {
                        Show::Away
                    } else {
                        Show::Available
                    };
                    (u.clone(), show)
                })
                .collect(),
            in_flight: settings.logins_in_flight,
        };
        let swarm = Swarm::log_in(logins, epoch).await?;
        eprintln!(
            "  {} users logged in in {:.1} s",
            spec.users,
            login_start.elapsed().as_secs_f64()
        );
        component
            .wait_online_resources(spec.users, Duration::from_secs(120))
            .await?;

        let churn = (!population.churners.is_empty()).then(|| {
            let until = tokio::time::Instant::now() + settings.churn_warmup + settings.timeout;
            Churn::start(
                server,
                &population.churners,
                settings.logins_in_flight,
                until,
            )
        });
        if churn.is_some() {
            tokio::time::sleep(settings.churn_warmup).await;
        }

        let broker_pid = procstat::listener_pid(broker_port(broker.url()));
        let mut cpu = CpuWindows::start(Some(component.pid()), server_pids, broker_pid);
        let churn_before = churn
            .as_ref()
            .map_or(0, |c| c.stats().cycles.load(Ordering::Relaxed));

        let user_jids: Vec<String> = population.users.iter().map(|u| server.jid(u)).collect();
        let plan = Plan {
            jobs: spec.jobs,
            recipients_per_job: spec.recipients_per_job,
            users: &user_jids,
            rate: settings.rate,
        };
        if settings.prefill {
            component.pause()?;
        }
        let published = publisher::publish(broker, &plan, settings.publish_channels, epoch).await;
        let resumed = settings.prefill.then(|| {
            cpu = CpuWindows::start(Some(component.pid()), server_pids, broker_pid);
            let at = epoch.elapsed().as_nanos() as u64;
            component.resume();
            at
        });
        let (published, confirmed) = published?;
        let first = published.iter().min().copied().unwrap_or(confirmed);
        result.publish_s = confirmed.saturating_sub(first) as f64 / 1e9;
        wait_for(
            "messages",
            result.expected,
            || swarm.counters().received.load(Ordering::Relaxed),
            settings.idle_timeout,
            settings.timeout,
        )
        .await;

        cpu.record(result);
        result.component_peak_rss_mib =
            procstat::peak_rss_kib(component.pid()).map(|kib| kib as f64 / 1024.0);
        if let Some(churn) = churn {
            result.churn_cycles = churn.stop().await - churn_before;
            presence_check::record(result, population, spec, server, component).await?;
        }
        let receipts = swarm.finish().await;
        let away: Vec<bool> = (0..spec.users).map(|i| i < spec.away).collect();
        result.record(&tally(&published, resumed, &receipts, &away));
        // Reports trail their jobs' messages: the component sends first.
        wait_for(
            "reports",
            spec.jobs,
            || broker.reports().jobs,
            settings.idle_timeout,
            settings.timeout,
        )
        .await;
        result.record_reports(broker.reports());
        Ok(())
    }
}

/// Waits until `count()` reaches `expected`, nothing new was counted for
/// the idle timeout, or the overall timeout passed.
pub async fn wait_for(
    what: &str,
    expected: u64,
    count: impl Fn() -> u64,
    idle_timeout: Duration,
    timeout: Duration,
) {
    let start = Instant::now();
    let mut last_count = 0;
    let mut last_change = Instant::now();
    loop {
        let count = count();
        if count >= expected {
            return;
        }
        if count != last_count {
            last_count = count;
            last_change = Instant::now();
        }
        if last_change.elapsed() > idle_timeout || start.elapsed() > timeout {
            eprintln!("  gave up waiting: {count} of {expected} {what} arrived");
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(users: usize, away: usize, jobs: u64, per_job: usize) -> RunSpec {
        RunSpec {
            scenario: "t".into(),
            server: ServerKind::Prosody,
            nodes: 1,
            component: ComponentKind::Herald,
            run: 1,
            users,
            away,
            churn: 0,
            jobs,
            recipients_per_job: per_job,
        }
    }

    #[test]
    fn broker_port_from_urls() {
        assert_eq!(broker_port("amqp://guest:guest@127.0.0.1:5673/%2f"), 5673);
        assert_eq!(broker_port("amqp://127.0.0.1"), 5672);
        assert_eq!(broker_port("amqps://u:p@[::1]:5999"), 5999);
        assert_eq!(broker_port("amqps://u:p@localhost/vh"), 5671);
    }

    #[test]
    fn expected_skips_away_users() {
        assert_eq!(expected_messages(&spec(10, 0, 10, 1)), 10);
        assert_eq!(expected_messages(&spec(10, 3, 10, 1)), 7);
        assert_eq!(expected_messages(&spec(10, 3, 1, 10)), 7);
        assert_eq!(expected_messages(&spec(10, 0, 2, 10)), 20);
    }
}
