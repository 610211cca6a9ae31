//! Herald's config for a load-test run: the test kit's (Herald's defaults
//! pointed at the run's server and queues), with info logging so that
//! logging costs what it costs in production.

use std::path::Path;

use clap::ValueEnum;
use herald::config::{Config, StoreBackend};
use herald_testkit::herald::config::{self, XmppTarget};

use crate::broker::Names;

/// The store path is set when the component starts, in its own directory.
pub fn herald_config(xmpp: &XmppTarget, amqp_url: &str, names: &Names) -> Config {
    let mut config = config::config(xmpp, amqp_url, &names.component, Path::new(""));
    config.log.level = "info".into();
    config
}

/// `--store`: where Herald's store lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// A file beside its config.
    File,
    /// A stream on the run's broker.
    Stream,
}

impl StoreKind {
    pub fn backend(self) -> StoreBackend {
        match self {
            StoreKind::File => StoreBackend::File,
            StoreKind::Stream => StoreBackend::Stream,
        }
    }
}
