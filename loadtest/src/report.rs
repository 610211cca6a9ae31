//! What a run measured ([`RunResult`], one JSON line each), how receipts
//! become those numbers ([`tally`]), and the Markdown table over all runs.

use serde::{Deserialize, Serialize};

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
    /// Why the run failed; its numbers are then partial.
    pub error: Option<String>,
}

impl RunResult {
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

    /// Everything expected arrived and, where the component reports, every
    /// job was reported once and the reports add up to what was expected.
    pub fn is_accurate(&self) -> bool {
        self.error.is_none()
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
mod tests {
    use super::*;

    fn receipt(seq: u64, at_ms: u64) -> Receipt {
        Receipt {
            seq,
            at_ns: at_ms * 1_000_000,
        }
    }

    #[test]
    fn tally_counts_distinct_expected_receipts() {
        // Jobs published at 0, 10 and 20 ms.
        let published = [0, 10_000_000, 20_000_000];
        let receipts = vec![
            vec![receipt(0, 5), receipt(0, 6)],   // one duplicate
            vec![receipt(1, 30), receipt(9, 31)], // job 9 does not exist
            vec![receipt(2, 100)],                // away user: not counted
            vec![],
        ];
        let away = [false, false, true, false];
        let t = tally(&published, None, &receipts, &away);
        assert_eq!(t.delivered, 2);
        assert_eq!(t.duplicates, 1);
        assert!((t.elapsed_s - 0.030).abs() < 1e-9);
        assert!((t.throughput_msg_s - 2.0 / 0.030).abs() < 1e-6);
        let l = t.latency_ms.unwrap();
        assert_eq!((l.p50, l.p99), (5.0, 20.0));

        // Prefilled: the clock starts when the component resumed, at 10 ms.
        let t = tally(&published, Some(10_000_000), &receipts, &away);
        assert!((t.elapsed_s - 0.020).abs() < 1e-9);
    }

    #[test]
    fn tally_of_nothing_received() {
        let t = tally(&[0], None, &[vec![]], &[false]);
        assert_eq!(
            (t.delivered, t.throughput_msg_s, t.latency_ms),
            (0, 0.0, None)
        );
    }

    fn result(component: &str, run: usize, throughput: f64, accuracy: f64) -> RunResult {
        let mut r = RunResult::new("table1", ServerKind::Prosody, component, run);
        r.users = 100;
        r.jobs = 100;
        r.recipients_per_job = 1;
        r.expected = 100;
        r.delivered = (accuracy * 100.0) as u64;
        r.accuracy = accuracy;
        r.elapsed_s = 1.0;
        r.throughput_msg_s = throughput;
        r.publish_s = 0.5;
        r.latency_ms = Some(Latency {
            p50: 1.0,
            p95: 2.0,
            p99: 3.0,
        });
        r.component_cpu_s = Some(0.5);
        r.component_peak_rss_mib = Some(20.0);
        r.server_cpu_s = Some(1.0);
        r.loadtest_cpu_s = Some(0.2);
        r.broker_cpu_s = Some(0.7);
        r.machine_busy = Some(0.5);
        r.reports = Some(100);
        r.reported_sent = 100;
        r
    }

    #[test]
    fn markdown_has_spread_ratio_and_worst_accuracy() {
        let results = [
            result("herald", 1, 9000.0, 1.0),
            result("baseline", 1, 3000.0, 1.0),
            result("herald", 2, 11000.0, 0.99),
            result("baseline", 2, 1000.0, 1.0),
        ];
        let table = markdown(&results);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        let herald = lines[2];
        assert!(
            herald.contains("| herald | 2 | 99.00% | 100/100 | 9000 / 10000 / 11000 | 5.00x |"),
            "{herald}"
        );
        let baseline = lines[3];
        assert!(
            baseline.contains("| baseline | 2 | 100.00% | 100/100 | 1000 / 2000 / 3000 |  |"),
            "{baseline}"
        );
        assert!(herald.ends_with("| 0.7 | 50% |"), "{herald}");
    }

    #[test]
    fn markdown_shows_each_different_reports_summary_once() {
        let mut short = result("herald", 2, 1.0, 1.0);
        (short.reports, short.reported_sent, short.reports_incomplete) = (Some(98), 97, 1);
        let results = [
            result("herald", 1, 1.0, 1.0),
            short,
            result("herald", 3, 1.0, 1.0),
        ];
        let table = markdown(&results);
        let herald = table.lines().nth(2).unwrap();
        assert!(
            herald.contains("| 100/100; 98/100, 1 incomplete, sent 97 of 100 |"),
            "{herald}"
        );
    }

    #[test]
    fn accurate_only_with_every_report_adding_up() {
        assert!(result("herald", 1, 1.0, 1.0).is_accurate());
        let mut missing = result("herald", 1, 1.0, 1.0);
        missing.reports = Some(99);
        let mut incomplete = result("herald", 1, 1.0, 1.0);
        incomplete.reports_incomplete = 1;
        let mut short = result("herald", 1, 1.0, 1.0);
        short.reported_sent = 99;
        let mut undelivered = result("herald", 1, 1.0, 0.99);
        undelivered.delivered = 99;
        let mut failed = result("herald", 1, 1.0, 1.0);
        failed.error = Some("x".into());
        for r in [missing, incomplete, short, undelivered, failed] {
            assert!(!r.is_accurate(), "{r:?}");
        }
        let mut raw = result("raw", 1, 1.0, 1.0);
        (raw.reports, raw.reported_sent) = (None, 0);
        assert!(raw.is_accurate(), "nothing reports in server-ceiling runs");
        raw.delivered = 99;
        assert!(!raw.is_accurate());
    }

    #[test]
    fn lines_from_before_the_broker_and_report_columns_still_read() {
        let mut line = serde_json::to_value(result("herald", 1, 1.0, 1.0)).unwrap();
        for field in [
            "prefilled",
            "broker_cpu_s",
            "machine_busy",
            "reports",
            "reported_sent",
            "reports_incomplete",
        ] {
            line.as_object_mut().unwrap().remove(field);
        }
        let r: RunResult = serde_json::from_value(line).unwrap();
        assert_eq!(
            (r.prefilled, r.broker_cpu_s, r.machine_busy),
            (false, None, None)
        );
        assert_eq!(
            (r.reports, r.reported_sent, r.reports_incomplete),
            (None, 0, 0)
        );
    }

    #[test]
    fn the_recorded_results_still_read() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/results");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "jsonl") {
                for line in std::fs::read_to_string(&path).unwrap().lines() {
                    if let Err(e) = serde_json::from_str::<RunResult>(line) {
                        panic!("{}: {e}", path.display());
                    }
                }
            }
        }
    }

    #[test]
    fn json_line_round_trips() {
        let r = result("herald", 1, 1.0, 1.0);
        let line = serde_json::to_string(&r).unwrap();
        assert!(!line.contains('\n'));
        assert_eq!(serde_json::from_str::<RunResult>(&line).unwrap(), r);
    }
}
