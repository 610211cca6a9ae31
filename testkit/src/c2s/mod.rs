//! The c2s client of Herald's tests, examples and load test: one login
//! (plaintext TCP, SASL PLAIN, resource binding) on tokio-xmpp's XML stream
//! layer with plain `minidom::Element`s in the `jabber:client` namespace,
//! then one of two modes:
//!
//! * [`XmppUser`]: every stanza parsed, for tests that look at what arrives
//!   and send what they like;
//! * [`raw`]: the bytes after the login, scanned for `<message>` without
//!   building a DOM, for the load test's thousands of receivers, which must
//!   never be the bottleneck.
//!
//! Why not `tokio_xmpp::Client`: Herald enables xmpp-parsers' `component`
//! feature, which switches every xmpp-parsers stanza type to the
//! `jabber:component:accept` namespace for the whole build; the Client then
//! binds in the wrong namespace and Prosody ignores it.

use std::borrow::Cow;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use tokio::io::BufStream;
use tokio::net::TcpStream;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::xmlstream::{initiate_stream, ReadError, StreamHeader, Timeouts, XmlStream};

pub mod raw;
mod user;

pub use user::{ReceivedMessage, XmppUser, LOGIN_TIMEOUT};

pub const NS_CLIENT: &str = "jabber:client";
const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";

pub type Stream = XmlStream<BufStream<TcpStream>, Element>;

/// Connect, SASL PLAIN, stream restart, bind. Returns the stream and the
/// bound full JID.
pub async fn establish(
    addr: &str,
    domain: &str,
    user: &str,
    password: &str,
    resource: &str,
) -> Result<(Stream, String), String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("TCP connect: {e}"))?;
    tcp.set_nodelay(true).ok();
    let header = || StreamHeader {
        to: Some(Cow::Owned(domain.to_string())),
        from: None,
        id: None,
    };
    let pending = initiate_stream(BufStream::new(tcp), NS_CLIENT, header(), timeouts())
        .await
        .map_err(|e| format!("stream header: {e}"))?;
    let (features, mut stream) = pending
        .recv_features::<Element>()
        .await
        .map_err(|e| format!("stream features: {e}"))?;
    if !features.sasl_mechanisms.contains("PLAIN") {
        return Err(format!(
            "server offers no SASL PLAIN (offers {:?})",
            features.sasl_mechanisms
        ));
    }

    let auth = format!(
        "<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{}</auth>",
        BASE64.encode(format!("\0{user}\0{password}"))
    );
    send(&mut stream, &auth).await?;
    let reply = read_element(&mut stream).await?;
    match reply.name() {
        "success" => {}
        "failure" => {
            let condition: Vec<_> = reply.children().map(|c| c.name().to_string()).collect();
            return Err(format!("SASL failure {condition:?} (wrong password?)"));
        }
        other => return Err(format!("unexpected <{other}> during SASL")),
    }

    let pending = stream
        .initiate_reset()
        .send_header(header())
        .await
        .map_err(|e| format!("stream restart: {e}"))?;
    let (_features, mut stream) = pending
        .recv_features::<Element>()
        .await
        .map_err(|e| format!("stream features after SASL: {e}"))?;

    send(
        &mut stream,
        &format!(
            "<iq xmlns='{NS_CLIENT}' type='set' id='bind-1'><bind xmlns='{NS_BIND}'><resource>{}</resource></bind></iq>",
            escape(resource)
        ),
    )
    .await?;
    loop {
        let el = read_element(&mut stream).await?;
        if el.name() == "iq" && el.attr("id") == Some("bind-1") {
            if el.attr("type") != Some("result") {
                return Err(format!("resource binding failed: {}", String::from(&el)));
            }
            let jid = el
                .get_child("bind", NS_BIND)
                .and_then(|b| b.get_child("jid", NS_BIND))
                .map(|j| j.text())
                .ok_or_else(|| format!("bind result without jid: {}", String::from(&el)))?;
            return Ok((stream, jid));
        }
    }
}

/// Timeouts for the test client: tokio-xmpp reports a "soft timeout" after
/// `read_timeout` of silence and fails the stream `response_timeout` later;
/// a test user must stay connected while idle, so both are long.
fn timeouts() -> Timeouts {
    Timeouts {
        read_timeout: Duration::from_secs(3600),
        response_timeout: Duration::from_secs(3600),
    }
}

async fn send(stream: &mut Stream, xml: &str) -> Result<(), String> {
    let el: Element = xml.parse().map_err(|e| format!("bad XML {xml}: {e}"))?;
    stream.send(&el).await.map_err(|e| format!("write: {e}"))
}

async fn read_element(stream: &mut Stream) -> Result<Element, String> {
    loop {
        match stream.next().await {
            Some(Ok(el)) => return Ok(el),
            Some(Err(ReadError::SoftTimeout)) => continue,
            Some(Err(ReadError::ParseError(e))) => return Err(format!("parse error: {e}")),
            Some(Err(ReadError::HardError(e))) => return Err(format!("read: {e}")),
            Some(Err(ReadError::StreamFooterReceived)) | None => {
                return Err("server closed the stream".to_string())
            }
        }
    }
}

/// XML-escapes text for element content and single- or double-quoted
/// attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}
