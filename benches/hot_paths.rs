//! Micro-benchmarks of Herald's hot paths: presence updates on a large
//! book, a job's policy over its recipients, and a broadcast message turned
//! into the bytes Herald writes to the server.
//!
//! `cargo bench --bench hot_paths`; under `cargo test --all-targets` each
//! benchmark runs once as a test.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use herald::broadcast::fanout::template;
use herald::broadcast::{fan_out, Job, JobLimits};
use herald::presence::{Clock, PresenceBook, ResourcePresence, Show, Stamp};
use herald::xmpp::wire::{Outgoing, StanzaEncoder};
use xmpp_parsers::jid::{BareJid, FullJid};

/// Online resources in the book, as in the ceiling load test.
const BOOK: usize = 100_000;

fn user(i: usize) -> String {
    format!("u{i}@localhost")
}

fn resource(i: usize) -> FullJid {
    FullJid::new(&format!("{}/r", user(i))).expect("valid JID")
}

/// The moment every presence here comes at (the book's cost does not
/// depend on it).
fn at() -> Stamp {
    let origin = std::time::Instant::now();
    Clock::new(origin).stamp(origin)
}

fn online() -> ResourcePresence {
    ResourcePresence {
        show: Show::Online,
        priority: 0,
    }
}

/// A book of `BOOK` users with one resource each; one user in ten is away.
fn book() -> PresenceBook {
    let mut book = PresenceBook::new();
    let at = at();
    for i in 0..BOOK {
        let mut presence = online();
        if i % 10 == 0 {
            presence.show = Show::Away;
        }
        book.set_available(&resource(i), presence, at);
    }
    book
}

fn job(recipients: usize) -> Job {
    let limits = JobLimits {
        component_domain: BareJid::new("broadcast.localhost").expect("valid domain"),
        default_sender: "herald@broadcast.localhost".parse().unwrap(),
        max_body_bytes: 64 * 1024,
        max_recipients: BOOK,
        allowed_from: Vec::new(),
        names_part_bytes: 256 * 1024,
        max_deliver_within: std::time::Duration::from_secs(3600),
        receipts_window: std::time::Duration::from_secs(300),
    };
    let to: Vec<String> = (0..recipients).map(user).collect();
    let json = serde_json::json!({
        "id": "bench",
        "to": to,
        "body": "Maintenance tonight at 22:00 UTC: the service will be unavailable for 15 minutes.",
    });
    Job::parse(json.to_string().as_bytes(), &limits).expect("valid job")
}

fn presence_update(c: &mut Criterion) {
    let mut group = c.benchmark_group("presence");
    let mut book = book();
    let newcomer = resource(BOOK + 1);
    let at = at();
    group.bench_function("set_available+set_unavailable/100k book", |b| {
        b.iter(|| {
            black_box(book.set_available(black_box(&newcomer), online(), at));
            black_box(book.set_unavailable(black_box(&newcomer), at));
        })
    });
    let known = resource(BOOK / 2);
    group.bench_function("set_available (show change)/100k book", |b| {
        let mut away = false;
        b.iter(|| {
            away = !away;
            let mut presence = online();
            if away {
                presence.show = Show::Away;
            }
            black_box(book.set_available(black_box(&known), presence, at))
        })
    });
    group.finish();
}

fn policy(c: &mut Criterion) {
    let mut group = c.benchmark_group("fan_out/100k book");
    let book = book();
    for recipients in [1, 1_000, 10_000] {
        let job = job(recipients);
        group.throughput(Throughput::Elements(recipients as u64));
        group.bench_with_input(BenchmarkId::from_parameter(recipients), &job, |b, job| {
            b.iter(|| black_box(fan_out(black_box(job), &book)))
        });
    }
    group.finish();
}

fn serialization(c: &mut Criterion) {
    let mut group = c.benchmark_group("serialize");
    let mut book = PresenceBook::new();
    book.set_available(&resource(0), online(), at());
    let mut job = job(1);
    let to = fan_out(&job, &book)
        .deliver_to
        .pop()
        .expect("one recipient is online");
    let template = Arc::new(template(&mut job).expect("serializable"));
    let stanza = Outgoing::Message { template, to };
    let mut encoder = StanzaEncoder::default();
    let mut buffer = Vec::with_capacity(4096);
    encoder.encode(&stanza, &mut buffer).expect("serializable");
    let bytes = buffer.len();
    assert!(
        std::str::from_utf8(&buffer)
            .is_ok_and(|xml| xml.starts_with("<message") && !xml.contains("jabber:component")),
        "unexpected serialization: {}",
        String::from_utf8_lossy(&buffer)
    );
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("broadcast message", |b| {
        b.iter(|| {
            buffer.clear();
            encoder
                .encode(black_box(&stanza), &mut buffer)
                .expect("serializable");
            black_box(buffer.len())
        })
    });
    group.finish();
}

criterion_group!(benches, presence_update, policy, serialization);
criterion_main!(benches);
