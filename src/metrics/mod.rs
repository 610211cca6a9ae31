//! Herald's Prometheus metrics. The event loop and the AMQP link write them;
//! the HTTP endpoint ([`crate::http`]) reads them. Handles are cheap clones
//! of atomics, so writing one never waits.

use std::time::Duration;

use prometheus::{
    Counter, Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

mod counters;

pub use counters::{
    JobCounters, LimitedCounters, LinkMetrics, ProbeCounters, RecipientCounters, RefusalCounters,
    SessionMetrics, StanzaCounters,
};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub session: SessionMetrics,
    pub jobs: JobCounters,
    pub recipients: RecipientCounters,
    pub limited: LimitedCounters,
    pub probes: ProbeCounters,
    pub refusals: RefusalCounters,
    /// Jobs taken and not fanned out yet (waiting for probes, or behind one that does).
    pub held_jobs: IntGauge,
    pub job_duration: Histogram,
    pub server_roundtrip: Histogram,
    pub online_users: IntGauge,
    pub online_resources: IntGauge,
    pub presence_updates: IntCounter,
    pub subscriptions: IntGauge,
    pub remembered_jobs: IntGauge,
    /// Recipients waiting in jobs' windows, and those reached there.
    pub deferred_waiting: IntGauge,
    pub deferred_reached: IntCounter,
    /// Delivery receipts counted for jobs that asked for them.
    pub receipts: IntCounter,
    pub outbound_queue: IntGauge,
    /// Jobs that may be in flight now ([`crate::core`]'s window).
    pub job_window: IntGauge,
    /// Stanzas that may wait for the server to read them now.
    pub read_window: IntGauge,
    pub xmpp: LinkMetrics,
    /// Component sessions up: one, or one per node with
    /// `xmpp.connect_every_node`.
    pub xmpp_sessions: IntGauge,
    pub amqp: LinkMetrics,
    /// 1 while this Herald holds its jobs queue; 0 while it stands by.
    pub active: IntGauge,
    /// 1 when presence is rebuilt after connecting and jobs are taken.
    pub presence_ready: IntGauge,
    pub ready: IntGauge,
    pub events_confirmed: IntCounter,
    pub events_failed: IntCounter,
    /// Store commits that failed (each is retried until it succeeds).
    pub store_errors: IntCounter,
    /// 1 while the last store commit failed: jobs wait, Herald is unready.
    pub store_failing: IntGauge,
    pub loop_busy: Counter,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, label: &str| {
            let family = IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric");
            register(&registry, family.clone());
            family
        };
        let received = counter_vec(
            "herald_stanzas_received_total",
            "Stanzas received from the XMPP server, by kind",
            "kind",
        );
        let sent = counter_vec(
            "herald_stanzas_sent_total",
            "Stanzas queued for the XMPP server, by kind",
            "kind",
        );
        let jobs = counter_vec("herald_jobs_total", "Jobs by outcome", "outcome");
        let recipients = counter_vec(
            "herald_recipients_total",
            "Recipients of jobs by outcome",
            "outcome",
        );
        let limited = counter_vec(
            "herald_user_stanzas_limited_total",
            "Users' messages and presence changes over the per-user rate, not turned into events",
            "kind",
        );
        let events = counter_vec(
            "herald_events_published_total",
            "Reports, events and dead letters published to the broker, by result",
            "result",
        );
        let probes = counter_vec(
            "herald_probes_sent_total",
            "Presence probes sent: to known subscribers after connecting, or to job recipients Herald knew nothing about",
            "reason",
        );
        let metrics = Metrics {
            registry: registry.clone(),
            session: SessionMetrics {
                received: StanzaCounters::new(&received),
                received_invalid: received.with_label_values(&["invalid"]),
                sent: StanzaCounters::new(&sent),
                unserializable: counter(
                    &registry,
                    "herald_stanzas_unserializable_total",
                    "Stanzas dropped because they could not be serialized",
                ),
            },
            jobs: JobCounters {
                delivered: jobs.with_label_values(&["delivered"]),
                dead_lettered: jobs.with_label_values(&["dead_lettered"]),
                requeued: jobs.with_label_values(&["requeued"]),
                duplicate: jobs.with_label_values(&["duplicate"]),
                cancelled: jobs.with_label_values(&["cancelled"]),
            },
            limited: LimitedCounters {
                message: limited.with_label_values(&["message"]),
                presence: limited.with_label_values(&["presence"]),
            },
            recipients: RecipientCounters {
                sent: recipients.with_label_values(&["sent"]),
                offline: recipients.with_label_values(&["offline"]),
                unavailable: recipients.with_label_values(&["unavailable"]),
                invalid: recipients.with_label_values(&["invalid"]),
                expired: recipients.with_label_values(&["expired"]),
                cancelled: recipients.with_label_values(&["cancelled"]),
            },
            probes: ProbeCounters {
                subscriber: probes.with_label_values(&["subscriber"]),
                unknown_recipient: probes.with_label_values(&["unknown_recipient"]),
            },
            refusals: RefusalCounters::new(counter_vec(
                "herald_refusals_total",
                "Producers' jobs dead-lettered and control requests answered forbidden under producers, by the kind of refusal",
                "reason",
            )),
            held_jobs: gauge(
                &registry,
                "herald_held_jobs",
                "Jobs taken but not fanned out yet: waiting for probes of unknown recipients, or behind such a job",
            ),
            job_duration: histogram(
                &registry,
                "herald_job_duration_seconds",
                "From publication (AMQP timestamp) or intake to the server having read the job's stanzas",
                // Up to an hour: the time in the queue counts, and
                // histogram_quantile never reports more than the highest
                // finite bucket, so an alert at 60 s needs buckets above it.
                vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    120.0, 300.0, 600.0, 1800.0, 3600.0,
                ],
            ),
            server_roundtrip: histogram(
                &registry,
                "herald_server_roundtrip_seconds",
                "Time for the XMPP server to answer a barrier ping: how far behind it reads Herald's stream",
                // Well past the alert's 5 s: up to two minutes, the default
                // xmpp.read_timeout_secs.
                vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0],
            ),
            online_users: gauge(&registry, "herald_online_users", "Users with at least one online resource"),
            online_resources: gauge(&registry, "herald_online_resources", "Online resources tracked"),
            presence_updates: counter(
                &registry,
                "herald_presence_updates_total",
                "Presence stanzas applied to the presence book",
            ),
            subscriptions: gauge(&registry, "herald_subscriptions", "Stored user subscriptions"),
            remembered_jobs: gauge(
                &registry,
                "herald_remembered_jobs",
                "Completed jobs remembered by id to recognise duplicates",
            ),
            deferred_waiting: gauge(
                &registry,
                "herald_deferred_recipients",
                "Recipients waiting in jobs' windows (deliver_within_secs) for their presence to allow the message",
            ),
            deferred_reached: counter(
                &registry,
                "herald_deferred_reached_total",
                "Recipients who waited in a job's window and were sent its message when they came online",
            ),
            receipts: counter(
                &registry,
                "herald_receipts_total",
                "Delivery receipts (XEP-0184) counted for jobs that asked for them, each message once",
            ),
            outbound_queue: gauge(
                &registry,
                "herald_outbound_queue_stanzas",
                "Stanzas queued by the event loop and not yet taken by the socket",
            ),
            job_window: gauge(
                &registry,
                "herald_job_window",
                "Jobs Herald takes into flight at most now: twice the rate it settles them times the shortest time one takes, between 64 and amqp.prefetch, starting at 256",
            ),
            read_window: gauge(
                &registry,
                "herald_read_window_stanzas",
                "Stanzas Herald lets wait for the server to read them at most now: the server's read rate times its base roundtrip plus xmpp.server_queue_ms, between 512 and xmpp.outbound_high_water",
            ),
            xmpp: LinkMetrics::new(&registry, "xmpp", "XMPP server"),
            xmpp_sessions: gauge(
                &registry,
                "herald_xmpp_sessions",
                "Component sessions up that make Herald's stream: one, or one per server node with xmpp.connect_every_node",
            ),
            amqp: LinkMetrics::new(&registry, "amqp", "AMQP broker"),
            active: gauge(
                &registry,
                "herald_active",
                "1 while this Herald holds its jobs queue and serves the domain; 0 while it stands by for another",
            ),
            presence_ready: gauge(
                &registry,
                "herald_presence_ready",
                "1 once presence is rebuilt after connecting to the XMPP server",
            ),
            ready: gauge(&registry, "herald_ready", "1 while Herald takes jobs"),
            events_confirmed: events.with_label_values(&["confirmed"]),
            events_failed: events.with_label_values(&["failed"]),
            store_errors: counter(
                &registry,
                "herald_store_errors_total",
                "Store commits that failed; each is retried, and the jobs waiting for it are not acknowledged meanwhile",
            ),
            store_failing: gauge(
                &registry,
                "herald_store_failing",
                "1 while the last store commit failed and none has succeeded since",
            ),
            loop_busy: {
                let busy = Counter::new(
                    "herald_event_loop_busy_seconds_total",
                    "Time the event loop spent handling inputs rather than waiting",
                )
                .expect("valid metric");
                register(&registry, busy.clone());
                busy
            },
        };
        if let Err(e) = registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        )) {
            tracing::debug!(error = %e, "process metrics unavailable");
        }
        metrics
    }

    /// Why Herald is not ready, or `None` when it is.
    pub fn unready_reason(&self) -> Option<&'static str> {
        if !self.amqp.is_up() {
            Some("AMQP broker not connected")
        } else if self.active.get() == 0 {
            Some("standing by: another Herald holds the jobs queue")
        } else if !self.xmpp.is_up() {
            Some("XMPP server not connected")
        } else if self.presence_ready.get() == 0 {
            Some("presence not rebuilt yet")
        } else if self.store_failing.get() == 1 {
            Some("store commits failing")
        } else {
            None
        }
    }

    /// Recomputes `herald_ready` from the parts it depends on.
    pub fn update_ready(&self) {
        self.ready.set(i64::from(self.unready_reason().is_none()));
    }

    pub fn add_busy(&self, busy: Duration) {
        self.loop_busy.inc_by(busy.as_secs_f64());
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut buffer = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        buffer
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

// Names and help texts are constants: registration can only fail on a
// programming error (a duplicate name), which the unit tests catch.
fn register<C: prometheus::core::Collector + 'static>(registry: &Registry, collector: C) {
    registry
        .register(Box::new(collector))
        .expect("metric registered once");
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let counter = IntCounter::new(name, help).expect("valid metric");
    register(registry, counter.clone());
    counter
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let gauge = IntGauge::new(name, help).expect("valid metric");
    register(registry, gauge.clone());
    gauge
}

fn histogram(registry: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let histogram = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
        .expect("valid metric");
    register(registry, histogram.clone());
    histogram
}

#[cfg(test)]
mod tests;
