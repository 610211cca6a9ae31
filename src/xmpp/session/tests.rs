//! The session against the test kit's fake server: what the server sent
//! is read before the news that the queue drained.

use std::time::Duration;

use herald_testkit::fake_server::FakeServer;
use xmpp_parsers::jid::BareJid;

use super::*;
use crate::metrics::Metrics;
use crate::xmpp::stanzas;

async fn connected(server: &FakeServer) -> Session {
    let target = server.target();
    let server = ServerAddress::new(&target.host, target.port);
    let endpoint = Endpoint {
        domain: BareJid::new(&target.domain).unwrap(),
        connect_timeout: Duration::from_secs(10),
        read_timeout: Duration::from_secs(60),
        tls: None,
    };
    Session::connect(&server, &endpoint, &target.secret, Metrics::new().session)
        .await
        .expect("the fake server takes the handshake")
}

/// A big job's slices refill the queue as fast as a quick server drains
/// it: were `Drained` answered first, the server's answers (to the
/// barriers, above all) would wait in the socket until the job ends.
#[tokio::test]
async fn what_the_server_sent_comes_before_the_queue_drained() {
    let server = FakeServer::start();
    server.send("<presence from='u1@localhost/r' to='herald@broadcast.localhost'/>");
    let mut session = connected(&server).await;
    // The presence is written once the stream is authenticated: let it
    // reach Herald's socket.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (from, to) = (
        BareJid::new("broadcast.localhost").unwrap(),
        BareJid::new("localhost").unwrap(),
    );
    for n in 0..10 {
        let ping = stanzas::ping(&from, &to, format!("p{n}"));
        session.enqueue(Outgoing::Stanza(Box::new(ping.into())));
    }
    // Due at once: the ten stanzas are written in the next poll.
    session.wake_below(100);

    let first = tokio::time::timeout(Duration::from_secs(10), session.next())
        .await
        .expect("something happens");
    assert!(
        matches!(&first, Inbound::Stanza(Stanza::Presence(_))),
        "the presence first, got {first:?}"
    );
    // The pongs to the ten pings come too; `Drained` is answered once
    // nothing is left to read.
    let mut drained = false;
    for _ in 0..11 {
        match tokio::time::timeout(Duration::from_secs(10), session.next()).await {
            Ok(Inbound::Drained) => {
                drained = true;
                break;
            }
            Ok(Inbound::Stanza(_)) => {}
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => break,
        }
    }
    assert!(
        drained,
        "the drained queue is told once nothing is left to read"
    );
}
