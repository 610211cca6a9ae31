//! The counters that come in families (one metric, a label per kind),
//! each label resolved once so that counting does no label lookup.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use super::register;
use crate::producers::Refusal;

/// Stanza counters by kind, resolved once so the hot path does no label lookup.
#[derive(Clone)]
pub struct StanzaCounters {
    pub message: IntCounter,
    pub presence: IntCounter,
    pub iq: IntCounter,
}

impl StanzaCounters {
    pub(super) fn new(family: &IntCounterVec) -> Self {
        StanzaCounters {
            message: family.with_label_values(&["message"]),
            presence: family.with_label_values(&["presence"]),
            iq: family.with_label_values(&["iq"]),
        }
    }
}

/// Metrics of the XMPP session, handed to it at connect.
#[derive(Clone)]
pub struct SessionMetrics {
    pub received: StanzaCounters,
    pub received_invalid: IntCounter,
    pub sent: StanzaCounters,
    pub unserializable: IntCounter,
}

/// What users' stanzas were not turned into events, by kind.
#[derive(Clone)]
pub struct LimitedCounters {
    pub message: IntCounter,
    pub presence: IntCounter,
}

/// Outcomes of jobs, as counted in `herald_jobs_total`.
#[derive(Clone)]
pub struct JobCounters {
    pub delivered: IntCounter,
    pub dead_lettered: IntCounter,
    pub requeued: IntCounter,
    pub duplicate: IntCounter,
    /// Jobs reported cancelled (before they came up or while going out).
    pub cancelled: IntCounter,
}

/// Outcomes of recipients, as counted in `herald_recipients_total`.
#[derive(Clone)]
pub struct RecipientCounters {
    pub sent: IntCounter,
    pub offline: IntCounter,
    pub unavailable: IntCounter,
    pub invalid: IntCounter,
    pub expired: IntCounter,
    pub cancelled: IntCounter,
}

/// Presence probes sent, by why, as counted in `herald_probes_sent_total`.
#[derive(Clone)]
pub struct ProbeCounters {
    /// Known subscribers, after each (re)connect.
    pub subscriber: IntCounter,
    /// Job recipients Herald knew nothing about.
    pub unknown_recipient: IntCounter,
}

/// One side of the broker or server connection.
#[derive(Clone)]
pub struct LinkMetrics {
    pub connected: IntGauge,
    pub connects_ok: IntCounter,
    pub connects_failed: IntCounter,
}

impl LinkMetrics {
    pub(super) fn new(registry: &Registry, name: &str, what: &str) -> Self {
        let connected = IntGauge::new(
            format!("herald_{name}_connected"),
            format!("1 while the {what} connection is up"),
        )
        .expect("valid metric");
        let connects = IntCounterVec::new(
            Opts::new(
                format!("herald_{name}_connects_total"),
                format!("Connection attempts to the {what}, by result"),
            ),
            &["result"],
        )
        .expect("valid metric");
        register(registry, connected.clone());
        register(registry, connects.clone());
        LinkMetrics {
            connected,
            connects_ok: connects.with_label_values(&["ok"]),
            connects_failed: connects.with_label_values(&["error"]),
        }
    }

    pub fn up(&self) {
        self.connected.set(1);
        self.connects_ok.inc();
    }

    pub fn failed(&self) {
        self.connected.set(0);
        self.connects_failed.inc();
    }

    pub fn down(&self) {
        self.connected.set(0);
    }

    pub fn is_up(&self) -> bool {
        self.connected.get() == 1
    }
}

/// Producers' refusals by kind, as counted in `herald_refusals_total`:
/// every kind of [`Refusal`] is a label from the start, at zero, so that a
/// rate over it is defined before the first refusal. Looked up by label
/// when counted: refusals are rare.
#[derive(Clone)]
pub struct RefusalCounters {
    family: IntCounterVec,
}

impl RefusalCounters {
    pub(super) fn new(family: IntCounterVec) -> Self {
        for reason in Refusal::REASONS {
            family.with_label_values(&[reason]);
        }
        RefusalCounters { family }
    }

    pub fn count(&self, refusal: &Refusal) {
        self.family.with_label_values(&[refusal.reason()]).inc();
    }
}
