//! A bare XEP-0114 component (tokio-xmpp's `Component`) for harness tests
//! that check what a server routes to the component, without Herald.

use std::time::Duration;

use futures_util::StreamExt;
use tokio_xmpp::connect::{DnsConfig, TcpServerConnector};
use tokio_xmpp::parsers::presence::Presence;
use tokio_xmpp::xmlstream::Timeouts;
use tokio_xmpp::{Component, Stanza};

use crate::server::XmppServer;

const WAIT: Duration = Duration::from_secs(10);

/// Connects and authenticates as the server's component domain.
pub async fn connect_component(server: &impl XmppServer) -> Component<TcpServerConnector> {
    tokio::time::timeout(
        WAIT,
        Component::new_plaintext(
            server.component_domain(),
            server.component_secret(),
            DnsConfig::addr(&server.component_addr()),
            Timeouts::tight(),
        ),
    )
    .await
    .expect("component connect timed out")
    .expect("component connect failed")
}

/// The next presence from `from_bare` (any resource) that satisfies `pred`,
/// skipping everything else (probes, other users, ...). Panics after 10 s.
pub async fn next_presence_from(
    component: &mut Component<TcpServerConnector>,
    from_bare: &str,
    pred: impl Fn(&Presence) -> bool,
) -> Presence {
    let found = tokio::time::timeout(WAIT, async {
        while let Some(stanza) = component.next().await {
            if let Stanza::Presence(p) = stanza {
                let from_matches = p
                    .from
                    .as_ref()
                    .is_some_and(|f| f.to_bare().to_string() == from_bare);
                if from_matches && pred(&p) {
                    return Some(p);
                }
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(p)) => p,
        Ok(None) => panic!("component stream ended while waiting for presence from {from_bare}"),
        Err(_) => panic!("no matching presence from {from_bare} within {WAIT:?}"),
    }
}
