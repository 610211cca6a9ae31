//! How long a Herald takes to read a store of N subscribers before it can
//! build its core: from its file, and from a stream on the broker
//! (`store.backend = "stream"`), in the same run. Each store is written once
//! (commits of 1,000 subscriptions, as a flood of logins commits them),
//! then read `--repeat` times, the two alternating; each read is what a
//! starting Herald does (the file: open, lock, replay; the stream: a new
//! connection, a fence, everything up to it), and then the subscribers as
//! the core takes them.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use herald::amqp::{StoreStream, StoreWriter, StreamStore};
use herald::core::Batch;
use herald::store::{replica, Change, Store, Subscription};
use lapin::options::QueueDeleteOptions;
use lapin::{Connection, ConnectionProperties};
use serde::Serialize;
use xmpp_parsers::jid::BareJid;

const COMMIT: usize = 1_000;
const REMEMBER_JOBS: usize = 100_000;

#[derive(Debug, Args)]
pub struct StoreOpenArgs {
    /// Subscribers in the store.
    #[arg(long, default_value_t = 1_000_000)]
    subscribers: usize,
    /// Reads of each store.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp_url: String,
    /// Where the store file goes (a directory of its own, removed after).
    #[arg(long, default_value = "/var/tmp")]
    dir: PathBuf,
}

#[derive(Debug, Serialize)]
struct Outcome {
    scenario: &'static str,
    subscribers: usize,
    file_bytes: u64,
    /// Seconds to write each store, commit after commit.
    file_write_secs: f64,
    stream_write_secs: f64,
    /// Seconds from nothing open to the subscribers in hand, each read.
    file_read_secs: Vec<f64>,
    stream_read_secs: Vec<f64>,
}

pub async fn run(args: StoreOpenArgs) -> Result<bool, String> {
    let commits: Vec<Vec<Change>> = (0..args.subscribers)
        .collect::<Vec<_>>()
        .chunks(COMMIT)
        .map(|chunk| chunk.iter().map(|&n| subscription(n)).collect())
        .collect();
    let dir = tempfile::tempdir_in(&args.dir).map_err(|e| e.to_string())?;
    let path = dir.path().join("herald.store");
    let started = Instant::now();
    let (store, _) = Store::open(&path, REMEMBER_JOBS).map_err(|e| e.to_string())?;
    let mut writer = store.spawn_writer();
    for (id, changes) in commits.iter().enumerate() {
        let (id, changes) = (id as u64, changes.clone());
        writer.commit(Batch { id, changes });
        writer
            .results
            .recv()
            .await
            .ok_or("the store's writer died")?;
    }
    writer.finish(Vec::new());
    let file_write_secs = started.elapsed().as_secs_f64();
    let file_bytes = std::fs::metadata(&path).map_err(|e| e.to_string())?.len();

    let settings = StoreStream {
        queue: herald_testkit::amqp::unique_name("herald-store-open"),
        max_bytes: 8 << 30,
        remember_jobs: REMEMBER_JOBS,
    };
    let connection = connect(&args.amqp_url).await?;
    let outcome = measure(&args, &commits, &path, &settings, &connection).await;
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| e.to_string())?;
    let deleted = channel
        .queue_delete(
            settings.queue.as_str().into(),
            QueueDeleteOptions::default(),
        )
        .await;
    let _ = connection.close(200, "done".into()).await;
    let (stream_write_secs, file_read_secs, stream_read_secs) = outcome?;
    deleted.map_err(|e| format!("deleting {}: {e}", settings.queue))?;
    let outcome = Outcome {
        scenario: "store-open",
        subscribers: args.subscribers,
        file_bytes,
        file_write_secs,
        stream_write_secs,
        file_read_secs,
        stream_read_secs,
    };
    println!("{}", serde_json::to_string(&outcome).unwrap_or_default());
    Ok(true)
}

/// Writes the stream, then reads both stores in turn.
async fn measure(
    args: &StoreOpenArgs,
    commits: &[Vec<Change>],
    path: &std::path::Path,
    settings: &StoreStream,
    connection: &Connection,
) -> Result<(f64, Vec<f64>, Vec<f64>), String> {
    let started = Instant::now();
    let mut stream = (StreamStore::open(connection, settings, StoreWriter::new()).await)
        .map_err(|e| e.to_string())?;
    for changes in commits {
        let appended = stream.append(replica::batch(changes)).await;
        appended.map_err(|e| e.to_string())?;
    }
    let stream_write_secs = started.elapsed().as_secs_f64();
    let (mut file_reads, mut stream_reads) = (Vec::new(), Vec::new());
    for _ in 0..args.repeat {
        let started = Instant::now();
        let (store, restored) = Store::open(path, REMEMBER_JOBS).map_err(|e| e.to_string())?;
        file_reads.push(started.elapsed().as_secs_f64());
        check(restored.subscriptions.len(), args.subscribers, "file")?;
        drop((store, restored));

        let started = Instant::now();
        let reader = connect(&args.amqp_url).await?;
        let mut stream = (StreamStore::open(&reader, settings, StoreWriter::new()).await)
            .map_err(|e| e.to_string())?;
        let contents = stream.read().await.map_err(|e| e.to_string())?;
        let restored = contents.into_restored();
        stream_reads.push(started.elapsed().as_secs_f64());
        check(restored.subscriptions.len(), args.subscribers, "stream")?;
        let _ = reader.close(200, "read".into()).await;
    }
    Ok((stream_write_secs, file_reads, stream_reads))
}

fn subscription(n: usize) -> Change {
    Change::Add(Subscription {
        user: BareJid::new(&format!("user{n}@localhost")).expect("a JID"),
        contact: BareJid::new("herald@broadcast.localhost").expect("a JID"),
    })
}

fn check(read: usize, written: usize, store: &str) -> Result<(), String> {
    match read == written {
        true => Ok(()),
        false => Err(format!("the {store} gave {read} subscribers of {written}")),
    }
}

async fn connect(url: &str) -> Result<Connection, String> {
    (Connection::connect(url, ConnectionProperties::default()).await)
        .map_err(|e| format!("connecting to {url}: {e}"))
}
