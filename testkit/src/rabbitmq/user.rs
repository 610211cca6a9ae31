//! A broker user of its own for one test, on the shared broker the
//! [`crate::stack::Stack`] uses: a producer other than Herald (which
//! connects as the URL's user, `guest`), so that a test can publish with
//! a `user_id` RabbitMQ accepts and Herald's `[producers]` applies to.
//! Made with `rabbitmqctl` (as root, against the local node: the broker
//! of [`crate::amqp::amqp_url`] must be this machine's), with a unique
//! name and access to the default vhost only, and deleted when dropped,
//! so that the shared broker is left as it was.

use std::process::{Command, Stdio};

use crate::amqp::amqp_url;
use crate::server::random_hex;

pub struct BrokerUser {
    pub name: String,
    password: String,
}

impl BrokerUser {
    /// A new user with every permission on the default vhost `/`.
    pub fn add() -> BrokerUser {
        let name = format!("herald_producer_{}", &random_hex()[..12]);
        let password = format!("pw-{name}");
        ctl(&["add_user", &name, &password]);
        let user = BrokerUser { name, password };
        ctl(&["set_permissions", "-p", "/", &user.name, ".*", ".*", ".*"]);
        user
    }

    /// The tests' broker URL, logged in as this user.
    pub fn url(&self) -> String {
        let url = amqp_url();
        let host = url.rsplit_once('@').map_or(url.as_str(), |(_, host)| host);
        let host = host.strip_prefix("amqp://").unwrap_or(host);
        format!("amqp://{}:{}@{host}", self.name, self.password)
    }
}

impl Drop for BrokerUser {
    fn drop(&mut self) {
        if let Err(e) = run(&["delete_user", &self.name]) {
            eprintln!("broker user {} not deleted: {e}", self.name);
        }
    }
}

fn ctl(args: &[&str]) {
    if let Err(e) = run(args) {
        panic!("{e}");
    }
}

fn run(args: &[&str]) -> Result<(), String> {
    let output = Command::new("rabbitmqctl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run rabbitmqctl: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "rabbitmqctl {:?} failed: {}{}",
        &args[..1],
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}
