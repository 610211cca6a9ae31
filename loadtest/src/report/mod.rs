//! What a run measured ([`RunResult`], one JSON line each), how receipts
//! become those numbers ([`tally`]), and the Markdown table over all runs.

use serde::{Deserialize, Serialize};

use crate::job_reports::ReportCounts;
use crate::servers::ServerKind;
use crate::stats::{percentile, Spread};
use crate::swarm::Receipt;

/// One run of one component on one scenario, as printed (one JSON line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub scenario: String,
    pub server: String,
    pub component: String,
    /// 1-based index of the repetition.
    pub run: usize,
    pub users: usize,
    /// Users whose initial presence is `away` (not reached by jobs).
    pub away: usize,
    pub churn: usize,
    pub jobs: u64,
    pub recipients_per_job: usize,
    /// Messages the available users should get.
    pub expected: u64,
    /// Distinct (user, job) messages that arrived.
    pub delivered: u64,
    /// Messages that arrived more than once.
    pub duplicates: u64,
    /// delivered / expected.
    pub accuracy: f64,
    /// Jobs were all in the queue before the component, paused meanwhile,
    /// went on: the clock and CPU windows start when it resumes.
    #[serde(default)]
    pub prefilled: bool,
    /// First publish (or, prefilled, the resume) to last receipt.
    pub elapsed_s: f64,
    /// delivered / elapsed_s.
    pub throughput_msg_s: f64,
    /// First publish to the broker's last confirm: how fast jobs went in.
    pub publish_s: f64,
    /// Publish-to-receipt latency percentiles.
    pub latency_ms: Option<Latency>,
    /// CPU used by the component during the measured window.
    pub component_cpu_s: Option<f64>,
    pub component_peak_rss_mib: Option<f64>,
    /// CPU used by the XMPP server during the measured window.
    pub server_cpu_s: Option<f64>,
    /// CPU used by this process (swarm, churn, publisher) in the window.
    pub loadtest_cpu_s: Option<f64>,
    /// CPU used by RabbitMQ in the window.
    #[serde(default)]
    pub broker_cpu_s: Option<f64>,
    /// Share of all the machine's CPUs busy in the window (1.0: saturated).
    #[serde(default)]
    pub machine_busy: Option<f64>,
    /// Login/logout cycles of the churning users during the run.
    pub churn_cycles: u64,
    /// Distinct jobs the component reported on its events exchange
    /// (`None` where nothing reports: the raw component of `server-ceiling`).
    #[serde(default)]
    pub reports: Option<u64>,
    /// `sent` summed over those reports.
    #[serde(default)]
    pub reported_sent: u64,
    /// Reports that are unreadable, whose counts do not add up to their
    /// recipients, that say `duplicate`, or that repeat a job's id.
    #[serde(default)]
    pub reports_incomplete: u64,
    /// With churn, Herald only: users asked for their presence once the
    /// churn stopped and settled (the paper's Table III, presence row)...
    #[serde(default)]
    pub presence_asked: Option<usize>,
    /// ... and of them, those Herald placed wrongly (online or available
    /// when they were not, or the reverse).
    #[serde(default)]
    pub presence_wrong: Option<usize>,
    /// `groups` only: how long making its groups through the control
    /// plane took, from the first `group.put` to the last answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups_created_s: Option<f64>,
    /// Why the run failed; its numbers are then partial.
    pub error: Option<String>,
}

impl RunResult {
    /// What the reports said, once they stopped coming.
    pub fn record_reports(&mut self, reports: ReportCounts) {
        self.reports = Some(reports.jobs);
        self.reported_sent = reports.sent;
        self.reports_incomplete = reports.incomplete;
    }

    /// A run not measured yet: shape fields zero, no numbers, no error.
    pub fn new(scenario: &str, server: ServerKind, component: &str, run: usize) -> RunResult {
        RunResult {
            scenario: scenario.to_string(),
            server: server.name().to_string(),
            component: component.to_string(),
            run,
            users: 0,
            away: 0,
            churn: 0,
            jobs: 0,
            recipients_per_job: 0,
            expected: 0,
            delivered: 0,
            duplicates: 0,
            accuracy: 0.0,
            prefilled: false,
            elapsed_s: 0.0,
            throughput_msg_s: 0.0,
            publish_s: 0.0,
            latency_ms: None,
            component_cpu_s: None,
            component_peak_rss_mib: None,
            server_cpu_s: None,
            loadtest_cpu_s: None,
            broker_cpu_s: None,
            machine_busy: None,
            churn_cycles: 0,
            reports: None,
            reported_sent: 0,
            reports_incomplete: 0,
            presence_asked: None,
            presence_wrong: None,
            groups_created_s: None,
            error: None,
        }
    }

    /// Takes the receipts' numbers; accuracy is against `expected`.
    pub fn record(&mut self, t: &Tally) {
        self.delivered = t.delivered;
        self.duplicates = t.duplicates;
        self.elapsed_s = t.elapsed_s;
        self.throughput_msg_s = t.throughput_msg_s;
        self.latency_ms = t.latency_ms;
        self.accuracy = if self.expected == 0 {
            1.0
        } else {
            t.delivered as f64 / self.expected as f64
        };
    }

    /// Everything expected arrived, where the component reports, every
    /// job was reported once and the reports add up to what was expected,
    /// and where it was asked, it placed every user's presence right.
    pub fn is_accurate(&self) -> bool {
        self.error.is_none()
            && self.presence_wrong.is_none_or(|wrong| wrong == 0)
            && self.delivered >= self.expected
            && self.reports_incomplete == 0
            && self
                .reports
                .is_none_or(|jobs| jobs == self.jobs && self.reported_sent == self.expected)
    }

    /// The reports in a few words: `jobs reported / jobs`, then what is off.
    fn reports_summary(&self) -> String {
        let Some(reports) = self.reports else {
            return "-".to_string();
        };
        let mut summary = format!("{reports}/{}", self.jobs);
        if self.reports_incomplete > 0 {
            summary.push_str(&format!(", {} incomplete", self.reports_incomplete));
        }
        if self.reported_sent != self.expected {
            summary.push_str(&format!(
                ", sent {} of {}",
                self.reported_sent, self.expected
            ));
        }
        summary
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

/// What the receipts say about a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Tally {
    pub delivered: u64,
    pub duplicates: u64,
    pub elapsed_s: f64,
    pub throughput_msg_s: f64,
    pub latency_ms: Option<Latency>,
}

/// Sums up receipts. `published[seq]` is job `seq`'s publish time and
/// `receipts[i]` what user `i` received (both in ns since the run's epoch);
/// receipts of `away[i]` users and of unknown jobs do not count as
/// delivered. The clock runs from `start` (the earliest publish when
/// `None`) to the last counted receipt.
pub fn tally(
    published: &[u64],
    start: Option<u64>,
    receipts: &[Vec<Receipt>],
    away: &[bool],
) -> Tally {
    let mut delivered = 0u64;
    let mut duplicates = 0u64;
    let mut last = None::<u64>;
    let mut latencies = Vec::new();
    for (user, got) in receipts.iter().enumerate() {
        if away.get(user).copied().unwrap_or(false) {
            continue;
        }
        let mut got: Vec<Receipt> = got
            .iter()
            .copied()
            .filter(|r| (r.seq as usize) < published.len())
            .collect();
        got.sort_unstable_by_key(|r| (r.seq, r.at_ns));
        let before = got.len();
        got.dedup_by_key(|r| r.seq);
        duplicates += (before - got.len()) as u64;
        for r in got {
            delivered += 1;
            last = Some(last.map_or(r.at_ns, |l| l.max(r.at_ns)));
            latencies.push(r.at_ns.saturating_sub(published[r.seq as usize]) as f64 / 1e6);
        }
    }
    let elapsed_s = match (start.or(published.iter().min().copied()), last) {
        (Some(first), Some(last)) => last.saturating_sub(first) as f64 / 1e9,
        _ => 0.0,
    };
    latencies.sort_unstable_by(f64::total_cmp);
    let latency_ms = (!latencies.is_empty()).then(|| Latency {
        p50: percentile(&latencies, 50.0).unwrap(),
        p95: percentile(&latencies, 95.0).unwrap(),
        p99: percentile(&latencies, 99.0).unwrap(),
    });
    Tally {
        delivered,
        duplicates,
        elapsed_s,
        throughput_msg_s: if elapsed_s > 0.0 {
            delivered as f64 / elapsed_s
        } else {
            0.0
        },
        latency_ms,
    }
}

/// The Markdown summary: one row per scenario setup and component, with
/// min/mean/max throughput over the repetitions and Herald's throughput
/// over the baseline's.
pub fn markdown(results: &[RunResult]) -> String {
    let mut groups: Vec<(String, Vec<&RunResult>)> = Vec::new();
    for r in results {
        let prefilled = if r.prefilled { " (prefilled)" } else { "" };
        let key = format!(
            "{}{prefilled} | {} | {} | {} | {} × {}",
            r.scenario, r.server, r.users, r.churn, r.jobs, r.recipients_per_job
        );
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, runs)) => runs.push(r),
            None => groups.push((key, vec![r])),
        }
    }
    let mut out = String::from(
        "| scenario | server | users | churn | jobs × recipients | component | runs | accuracy (min) \
         | reports | msg/s min / mean / max | Herald / baseline | latency p50 / p95 / p99 ms (mean) \
         | component CPU s | component peak RSS MiB | server CPU s | load test CPU s | broker CPU s \
         | machine busy |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for (key, runs) in &groups {
        let mut components: Vec<&str> = Vec::new();
        for r in runs {
            if !components.contains(&r.component.as_str()) {
                components.push(&r.component);
            }
        }
        let mean_throughput = |component: &str| {
            Spread::of(
                runs.iter()
                    .filter(|r| r.component == component && r.error.is_none())
                    .map(|r| r.throughput_msg_s),
            )
            .map(|s| s.mean)
        };
        for component in &components {
            let mine: Vec<&&RunResult> =
                runs.iter().filter(|r| r.component == *component).collect();
            let ok: Vec<&&RunResult> = mine.iter().copied().filter(|r| r.error.is_none()).collect();
            let accuracy = mine
                .iter()
                .map(|r| if r.error.is_some() { 0.0 } else { r.accuracy })
                .fold(f64::INFINITY, f64::min);
            let mut reports: Vec<String> = Vec::new();
            for summary in mine.iter().map(|r| r.reports_summary()) {
                if !reports.contains(&summary) {
                    reports.push(summary);
                }
            }
            let reports = reports.join("; ");
            let throughput = Spread::of(ok.iter().map(|r| r.throughput_msg_s))
                .map(|s| format!("{:.0} / {:.0} / {:.0}", s.min, s.mean, s.max))
                .unwrap_or_else(|| "-".into());
            let ratio = match (
                *component,
                mean_throughput("herald"),
                mean_throughput("baseline"),
            ) {
                ("herald", Some(h), Some(b)) if b > 0.0 => format!("{:.2}x", h / b),
                _ => String::new(),
            };
            let lat = |f: fn(&Latency) -> f64| {
                Spread::of(ok.iter().filter_map(|r| r.latency_ms.as_ref().map(f))).map(|s| s.mean)
            };
            let latency = match (lat(|l| l.p50), lat(|l| l.p95), lat(|l| l.p99)) {
                (Some(a), Some(b), Some(c)) => format!("{a:.0} / {b:.0} / {c:.0}"),
                _ => "-".into(),
            };
            let mean_of = |f: fn(&RunResult) -> Option<f64>| {
                Spread::of(ok.iter().filter_map(|r| f(r)))
                    .map(|s| format!("{:.1}", s.mean))
                    .unwrap_or_else(|| "-".into())
            };
            let busy = Spread::of(ok.iter().filter_map(|r| r.machine_busy))
                .map(|s| format!("{:.0}%", s.mean * 100.0))
                .unwrap_or_else(|| "-".into());
            let peak_rss = ok
                .iter()
                .filter_map(|r| r.component_peak_rss_mib)
                .reduce(f64::max)
                .map(|m| format!("{m:.0}"))
                .unwrap_or_else(|| "-".into());
            out.push_str(&format!(
                "| {key} | {component} | {} | {:.2}% | {reports} | {throughput} | {ratio} | {latency} | {} | {peak_rss} | {} | {} | {} | {busy} |\n",
                mine.len(),
                accuracy * 100.0,
                mean_of(|r| r.component_cpu_s),
                mean_of(|r| r.server_cpu_s),
                mean_of(|r| r.loadtest_cpu_s),
                mean_of(|r| r.broker_cpu_s),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests;
