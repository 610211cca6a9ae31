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
