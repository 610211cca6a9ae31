//! Which RabbitMQ a `ceiling` run goes through: the shared broker at
//! `--amqp-url`, or nodes of its own (one, or a cluster), with Herald's
//! queues classic or quorum. What a move to a cluster and quorum queues
//! costs per job is measured by running both shapes one after the other.

use clap::ValueEnum;
use herald::config::{Config, QueueType, Secret};
use herald_testkit::rabbitmq::{PrivateBroker, PrivateCluster};
use lapin::types::{AMQPValue, FieldTable};

use crate::procstat::{cpu_seconds, listener_pid};
use crate::run::broker_port;

/// `--queue-type`: the type of the queues Herald and the bare consumer
/// take jobs from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JobQueues {
    Classic,
    Quorum,
}

impl JobQueues {
    fn queue_type(self) -> QueueType {
        match self {
            JobQueues::Classic => QueueType::Classic,
            JobQueues::Quorum => QueueType::Quorum,
        }
    }

    /// The arguments that declare a jobs queue of this type.
    pub fn arguments(self) -> FieldTable {
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-queue-type".into(),
            AMQPValue::LongString(self.queue_type().as_str().into()),
        );
        arguments
    }
}

/// The broker of a run; nodes of its own are stopped (by pid) when it is
/// dropped.
pub enum Brokers {
    Shared(String),
    Node(PrivateBroker),
    Cluster(PrivateCluster),
}

impl Brokers {
    /// `nodes` 0: the shared broker at `url`; 1: a node of the run's own;
    /// more: a cluster of that many. Blocks while nodes boot.
    pub fn start(nodes: usize, url: &str) -> Brokers {
        match nodes {
            0 => Brokers::Shared(url.to_string()),
            1 => Brokers::Node(PrivateBroker::start()),
            n => Brokers::Cluster(PrivateCluster::start(n)),
        }
    }

    /// The URL the load test publishes and reads reports through: the
    /// first node's.
    pub fn url(&self) -> String {
        match self {
            Brokers::Shared(url) => url.clone(),
            Brokers::Node(node) => node.url(),
            Brokers::Cluster(cluster) => cluster.urls()[0].clone(),
        }
    }

    /// Points Herald at every node, its queues of type `queues`.
    pub fn configure(&self, config: &mut Config, queues: JobQueues) {
        if let Brokers::Cluster(cluster) = self {
            config.amqp.url = None;
            config.amqp.urls = cluster.urls().iter().map(Secret::new).collect();
        }
        config.amqp.queue_type = queues.queue_type();
    }

    /// CPU seconds every node has used so far (their Erlang VMs, found by
    /// the port each listens on); None when one cannot be read.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let urls = match self {
            Brokers::Shared(url) => vec![url.clone()],
            Brokers::Node(node) => vec![node.url()],
            Brokers::Cluster(cluster) => cluster.urls(),
        };
        urls.iter()
            .map(|url| cpu_seconds(listener_pid(broker_port(url))?))
            .sum()
    }

    pub fn describe(&self) -> String {
        match self {
            Brokers::Shared(_) => "the shared broker".into(),
            Brokers::Node(_) => "a RabbitMQ node of its own".into(),
            Brokers::Cluster(cluster) => {
                format!("a RabbitMQ cluster of {} nodes", cluster.nodes().len())
            }
        }
    }
}
