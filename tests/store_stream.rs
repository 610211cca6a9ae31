//! The store in a RabbitMQ stream (`store.backend = "stream"`), against a
//! real broker: what one Herald appends (batches, then a snapshot, then
//! more batches) is what a successor on another connection reads, and a
//! stream whose retention removed its oldest messages before any snapshot
//! is refused, not read as if it were whole; a Herald that reconnects
//! learns whether another appended meanwhile.

use futures_util::StreamExt;
use herald::amqp::{StoreStream, StoreWriter, StreamError, StreamStore};
use herald::store::replica;
use herald::store::{Change, CompletedJob, Contents, Subscription};
use herald_testkit::amqp::{connect, unique_name, Amqp};
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::Connection;
use xmpp_parsers::jid::BareJid;

fn add(n: usize) -> Change {
    Change::Add(Subscription {
        user: BareJid::new(&format!("user{n}@localhost")).unwrap(),
        contact: BareJid::new("herald@broadcast.localhost").unwrap(),
    })
}

fn done(seq: u64) -> Change {
    Change::JobDone(CompletedJob {
        key: format!("job-{seq}"),
        seq,
        reported: true,
        report: vec![b'r'; 300],
    })
}

fn settings(max_bytes: u64) -> StoreStream {
    StoreStream {
        queue: unique_name("herald-test-store"),
        max_bytes,
        remember_jobs: 100_000,
    }
}

/// What a store holds, comparable: subscribers sorted, completed job keys
/// in order.
fn held(contents: Contents) -> (Vec<String>, Vec<String>) {
    let restored = contents.into_restored();
    let mut users: Vec<String> = (restored.subscriptions.iter())
        .map(|s| s.user.to_string())
        .collect();
    users.sort();
    let completed = restored.completed.into_iter().map(|job| job.key).collect();
    (users, completed)
}

#[tokio::test]
async fn a_successor_reads_what_was_appended_before_and_after_a_snapshot() {
    let settings = settings(1 << 30);
    let connection = connect().await;
    let mut store = StreamStore::open(&connection, &settings, StoreWriter::new())
        .await
        .unwrap();
    let empty = store.read().await.unwrap();
    assert_eq!(held(empty), (vec![], vec![]));

    let mut expected = Contents::new(settings.remember_jobs);
    let mut commit = |store_changes: Vec<Change>| {
        for change in &store_changes {
            expected.apply(change.clone());
        }
        replica::batch(&store_changes)
    };
    store
        .append(commit((0..1_000).map(add).collect()))
        .await
        .unwrap();
    // Enough completed jobs (each record can be made dead by a later one)
    // to make a snapshot due, in commits of 500.
    let mut seq = 0;
    while !store.snapshot_due() {
        let changes = (seq..seq + 500).map(done).collect();
        store.append(commit(changes)).await.unwrap();
        seq += 500;
    }
    assert!(seq > 20_000, "{seq} jobs made a snapshot due");
    let removed = match add(7) {
        Change::Add(subscription) => Change::Remove(subscription),
        _ => unreachable!(),
    };
    store.append(commit(vec![removed])).await.unwrap();
    let snapshot = store.write_snapshot().await.unwrap();
    assert!(!store.snapshot_due());
    store
        .append(commit((1_000..1_010).map(add).collect()))
        .await
        .unwrap();

    // A successor, on a connection of its own.
    let other = connect().await;
    let mut successor = StreamStore::open(&other, &settings, StoreWriter::new())
        .await
        .unwrap();
    let read = successor.read().await.unwrap();
    // Read from the snapshot on: what came before it is not counted again.
    assert!(!successor.snapshot_due());
    let (users, completed) = held(read);
    assert_eq!(users.len(), 1_009);
    assert!(!users.contains(&"user7@localhost".to_string()));
    assert_eq!(completed.len(), seq as usize);
    assert_eq!((users, completed), held(expected));
    eprintln!("{seq} jobs made a snapshot due; the snapshot: {snapshot} bytes");

    let _ = connection.close(200, "done".into()).await;
    let _ = other.close(200, "done".into()).await;
    let amqp = Amqp::connect().await;
    amqp.delete_queue(&settings.queue).await;
    amqp.close().await;
}

#[tokio::test]
async fn a_stream_that_lost_its_oldest_messages_before_any_snapshot_is_refused() {
    // Retention of 2 MiB in segments of 1 MiB, no snapshot: commits go on
    // until the broker has removed the oldest segment, which it does a
    // little after a segment fills.
    let settings = settings(2 << 20);
    let connection = connect().await;
    let mut store = StreamStore::open(&connection, &settings, StoreWriter::new())
        .await
        .unwrap();
    let mut seq = 0;
    loop {
        for _ in 0..8 {
            let changes = (seq..seq + 100).map(done).collect::<Vec<_>>();
            store.append(replica::batch(&changes)).await.unwrap();
            seq += 100;
        }
        if first_offset(&connection, &settings.queue).await > 0 {
            break;
        }
        assert!(seq < 100_000, "retention removed nothing of 32 MiB");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let other = connect().await;
    let mut successor = StreamStore::open(&other, &settings, StoreWriter::new())
        .await
        .unwrap();
    let read = successor.read().await;
    let refused = matches!(read, Err(StreamError::Truncated(_)));
    assert!(refused, "{:?}", read.map(|contents| held(contents).1.len()));
    let said = read.err().unwrap().to_string();
    assert!(said.contains("Delete the stream"), "{said}");

    let _ = connection.close(200, "done".into()).await;
    let _ = other.close(200, "done".into()).await;
    let amqp = Amqp::connect().await;
    amqp.delete_queue(&settings.queue).await;
    amqp.close().await;
}

/// The offset of the first message the stream still holds.
async fn first_offset(connection: &Connection, queue: &str) -> i64 {
    let channel = connection.create_channel().await.unwrap();
    channel
        .basic_qos(1, BasicQosOptions::default())
        .await
        .unwrap();
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-stream-offset".into(),
        AMQPValue::LongString("first".into()),
    );
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "first".into(),
            BasicConsumeOptions::default(),
            arguments,
        )
        .await
        .unwrap();
    let first = consumer.next().await.expect("a message").unwrap();
    let _ = channel.close(200, "seen".into()).await;
    let headers = first.properties.headers().clone().unwrap_or_default();
    match headers.inner().get("x-stream-offset") {
        Some(AMQPValue::LongLongInt(offset)) => *offset,
        other => panic!("no offset: {other:?}"),
    }
}

#[tokio::test]
async fn a_herald_back_on_the_broker_learns_whether_another_held_the_jobs_queue_meanwhile() {
    let settings = settings(1 << 30);
    let a = StoreWriter::new();
    let first = connect().await;
    let mut store = StreamStore::open(&first, &settings, a.clone())
        .await
        .unwrap();
    store.read().await.unwrap();
    store.append(replica::batch(&[add(1)])).await.unwrap();
    // A snapshot of its own reads (and fences) again: still alone.
    store.write_snapshot().await.unwrap();
    let _ = first.close(200, "lost".into()).await;

    let again = connect().await;
    let mut back = StreamStore::open(&again, &settings, a.clone())
        .await
        .unwrap();
    assert!(!back.overtaken().await.unwrap(), "nobody else appended");
    back.append(replica::batch(&[add(2)])).await.unwrap();
    let _ = again.close(200, "lost".into()).await;

    // B takes over while A is away: it reads (its fence) and commits.
    let other = connect().await;
    let mut b = StreamStore::open(&other, &settings, StoreWriter::new())
        .await
        .unwrap();
    let read = b.read().await.unwrap();
    assert_eq!(held(read).0, ["user1@localhost", "user2@localhost"]);
    b.append(replica::batch(&[add(3)])).await.unwrap();
    let _ = other.close(200, "killed".into()).await;

    let third = connect().await;
    let mut back = StreamStore::open(&third, &settings, a).await.unwrap();
    assert!(back.overtaken().await.unwrap(), "B's fence is there");
    let _ = third.close(200, "done".into()).await;

    let amqp = Amqp::connect().await;
    amqp.delete_queue(&settings.queue).await;
    amqp.close().await;
}
