//! Reading Herald's HTTP endpoint from tests: a plain HTTP/1.0 GET over a
//! std TCP stream (enough for three text endpoints) and a lookup of one
//! series in the Prometheus text format.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// GET `path` from `address`; returns the status code and the body.
pub fn get(address: &str, path: &str) -> (u16, String) {
    let mut stream =
        TcpStream::connect(address).unwrap_or_else(|e| panic!("connect {address}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").expect("send request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("malformed response: {response:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_string())
}

/// The value of `series` (a metric name with its labels exactly as Herald
/// renders them, e.g. `herald_jobs_total{outcome="delivered"}`), or 0 when
/// it is absent (a labelled counter not yet touched).
pub fn value(metrics: &str, series: &str) -> f64 {
    series_value(metrics, series).unwrap_or(0.0)
}

/// The value of `series`, if the text has it.
pub fn series_value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_unlabelled_gauge() {
        let text = "# HELP herald_online_resources_x other\nherald_online_resources_x 5\n\
                    # TYPE herald_online_resources gauge\nherald_online_resources 10000\n";
        assert_eq!(series_value(text, "herald_online_resources"), Some(10000.0));
        assert_eq!(series_value(text, "herald_online_users"), None);
        assert_eq!(value(text, "herald_online_users"), 0.0);
    }

    #[test]
    fn reads_a_labelled_series() {
        let text = "herald_jobs_total{outcome=\"delivered\"} 7\nherald_ready 1\n";
        assert_eq!(
            series_value(text, "herald_jobs_total{outcome=\"delivered\"}"),
            Some(7.0)
        );
        assert_eq!(series_value(text, "herald_jobs_total"), None);
    }
}
