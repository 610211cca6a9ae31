use super::*;

#[test]
fn every_family_renders_with_the_herald_prefix() {
    let metrics = Metrics::new();
    metrics.jobs.delivered.inc();
    metrics.recipients.offline.inc_by(3);
    let text = String::from_utf8(metrics.render()).unwrap();
    assert!(text.contains("herald_jobs_total{outcome=\"delivered\"} 1"));
    assert!(text.contains("herald_recipients_total{outcome=\"offline\"} 3"));
    for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
        let name = line.split_whitespace().nth(2).unwrap();
        assert!(
            name.starts_with("herald_") || name.starts_with("process_"),
            "{name}"
        );
    }
}

#[test]
fn readiness_names_the_first_missing_part() {
    let metrics = Metrics::new();
    assert_eq!(metrics.unready_reason(), Some("AMQP broker not connected"));
    metrics.amqp.up();
    assert_eq!(
        metrics.unready_reason(),
        Some("standing by: another Herald holds the jobs queue")
    );
    metrics.active.set(1);
    assert_eq!(metrics.unready_reason(), Some("XMPP server not connected"));
    metrics.xmpp.up();
    assert_eq!(metrics.unready_reason(), Some("presence not rebuilt yet"));
    metrics.presence_ready.set(1);
    metrics.store_failing.set(1);
    assert_eq!(metrics.unready_reason(), Some("store commits failing"));
    metrics.store_failing.set(0);
    metrics.update_ready();
    assert_eq!(metrics.unready_reason(), None);
    assert_eq!(metrics.ready.get(), 1);
    metrics.amqp.down();
    metrics.update_ready();
    assert_eq!(metrics.ready.get(), 0);
}
