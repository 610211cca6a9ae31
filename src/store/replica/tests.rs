use xmpp_parsers::jid::BareJid;

use super::*;
use crate::store::{CompletedJob, Subscription};

fn add(user: &str) -> Change {
    Change::Add(sub(user))
}

fn sub(user: &str) -> Subscription {
    Subscription {
        user: BareJid::new(user).unwrap(),
        contact: BareJid::new("herald@broadcast.localhost").unwrap(),
    }
}

fn done(key: &str, seq: u64) -> Change {
    Change::JobDone(CompletedJob {
        key: key.into(),
        seq,
        reported: true,
        report: vec![b'r'; 200],
    })
}

/// Reads `messages` as a stream from its first offset.
fn read_all(messages: &[Vec<u8>]) -> Replay {
    let mut replay = Replay::new(100);
    for (offset, message) in messages.iter().enumerate() {
        assert_ne!(replay.read(offset as u64, message), Read::Malformed);
    }
    replay
}

fn users(contents: Contents) -> Vec<String> {
    let mut users: Vec<String> = (contents.into_restored().subscriptions.into_iter())
        .map(|s| s.user.to_string())
        .collect();
    users.sort();
    users
}

#[test]
fn batches_read_back_in_order_up_to_a_fence() {
    let mut stream = batch(&[add("a@localhost"), add("b@localhost")]).messages;
    stream.extend(batch(&[Change::Remove(sub("a@localhost")), done("j1", 1)]).messages);
    stream.push(fence(7, 1));
    let mut replay = Replay::new(100);
    let reads: Vec<Read> = (stream.iter().enumerate())
        .map(|(offset, message)| replay.read(offset as u64, message))
        .collect();
    assert_eq!(reads, [Read::Applied, Read::Applied, Read::Fence(7)]);
    let (contents, _) = replay.finish().unwrap();
    assert!(contents.completed("j1").is_some());
    assert_eq!(users(contents), ["b@localhost"]);
}

#[test]
fn a_complete_snapshot_replaces_what_came_before_it() {
    let mut before = Contents::new(100);
    before.apply(add("kept@localhost"));
    let mut stream = batch(&[add("kept@localhost"), add("gone@localhost")]).messages;
    let snapshotted: Vec<Vec<u8>> = snapshot(1, &before).collect();
    let bytes = snapshotted.iter().map(|m| m.len() as u64).sum();
    stream.extend(snapshotted);
    stream.extend(batch(&[add("after@localhost")]).messages);
    let (contents, growth) = read_all(&stream).finish().unwrap();
    assert_eq!(users(contents), ["after@localhost", "kept@localhost"]);
    assert_eq!(growth, Growth::after_snapshot(bytes));
}

#[test]
fn a_snapshot_cut_by_its_writers_death_counts_for_nothing() {
    let mut held = Contents::new(100);
    held.apply(add("snapshotted@localhost"));
    let whole: Vec<Vec<u8>> = snapshot(3, &held).collect();
    let mut stream = batch(&[add("a@localhost")]).messages;
    // The writer died after the start and a part; its successor fenced
    // and committed; the rest of the old snapshot came late.
    stream.extend_from_slice(&whole[..2]);
    stream.push(fence(9, 1));
    stream.extend(batch(&[add("b@localhost")]).messages);
    stream.extend_from_slice(&whole[2..]);
    let (contents, _) = read_all(&stream).finish().unwrap();
    assert_eq!(users(contents), ["a@localhost", "b@localhost"]);
}

#[test]
fn a_stream_whose_head_retention_removed_needs_a_complete_snapshot() {
    let mut held = Contents::new(100);
    held.apply(add("a@localhost"));
    let tail = batch(&[add("b@localhost")]).messages;
    let mut replay = Replay::new(100);
    replay.read(40, &tail[0]);
    assert_eq!(replay.finish().err(), Some(Truncated));

    let mut replay = Replay::new(100);
    replay.read(40, &tail[0]);
    for (at, message) in snapshot(2, &held).enumerate() {
        replay.read(41 + at as u64, &message);
    }
    let (contents, _) = replay.finish().unwrap();
    assert_eq!(users(contents), ["a@localhost"]);
}

#[test]
fn a_big_commit_is_cut_into_messages_of_at_most_a_mebibyte_and_read_whole() {
    let changes: Vec<Change> = (0..40_000)
        .map(|n| add(&format!("user-number-{n:08}@localhost")))
        .collect();
    let appended = batch(&changes);
    assert!(appended.messages.len() > 1, "{}", appended.messages.len());
    for message in &appended.messages {
        assert!(message.len() < MAX_MESSAGE + 200, "{}", message.len());
    }
    let (contents, _) = read_all(&appended.messages).finish().unwrap();
    assert_eq!(contents.into_restored().subscriptions.len(), 40_000);

    let mut held = Contents::new(100);
    changes.into_iter().for_each(|change| held.apply(change));
    let parts: Vec<Vec<u8>> = snapshot(1, &held).collect();
    assert_eq!(
        parts.len(),
        appended.messages.len() + 2,
        "a start, the parts, an end"
    );
    assert!(parts.iter().all(|part| part.len() < MAX_MESSAGE + 200));
    let (contents, _) = read_all(&parts).finish().unwrap();
    assert_eq!(contents.into_restored().subscriptions.len(), 40_000);
}

#[test]
fn a_message_that_is_not_herald_s_is_skipped_and_the_rest_applied() {
    let mut replay = Replay::new(100);
    assert_eq!(replay.read(0, b"hello"), Read::Malformed);
    let mut damaged = batch(&[add("a@localhost"), add("b@localhost")]).messages[0].clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 0xff;
    assert_eq!(replay.read(1, &damaged), Read::Malformed);
    let (contents, _) = replay.finish().unwrap();
    assert_eq!(
        users(contents),
        ["a@localhost"],
        "the record before the damage"
    );
}

#[test]
fn a_snapshot_is_due_once_what_may_be_dead_outgrew_it_and_new_subscribers_never_count() {
    let mut growth = Growth::default();
    let subscribers: Vec<Change> = (0..100_000)
        .map(|n| add(&format!("u{n}@localhost")))
        .collect();
    growth.appended(&batch(&subscribers));
    assert!(!growth.snapshot_due());
    let mut stream = Vec::new();
    for seq in 0..60_000 {
        let appended = batch(&[done(&format!("job-{seq}"), seq)]);
        growth.appended(&appended);
        stream.extend(appended.messages);
    }
    assert!(growth.snapshot_due());
    // The reader counts the same.
    let (_, read) = read_all(&stream).finish().unwrap();
    assert!(read.snapshot_due());
    assert_eq!(read, growth);
}

#[test]
fn a_fence_says_whose_and_which_it_is() {
    assert_eq!(fence_of(&fence(7, 3)), Some((7, 3)));
    assert_eq!(fence_of(&batch(&[add("a@localhost")]).messages[0]), None);
    assert_eq!(fence_of(b"HRS1"), None);
}
