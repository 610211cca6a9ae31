//! Herald's config for a load-test run: the test kit's (Herald's defaults
//! pointed at the run's server and queues), with info logging so that
//! logging costs what it costs in production.

use std::path::Path;

use herald::config::Config;
use herald_testkit::herald::config::{self, XmppTarget};

use crate::broker::Names;

/// The store path is set when the component starts, in its own directory.
pub fn herald_config(xmpp: &XmppTarget, amqp_url: &str, names: &Names) -> Config {
    let mut config = config::config(xmpp, amqp_url, &names.component, Path::new(""));
    config.log.level = "info".into();
    config
}
