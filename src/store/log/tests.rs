use super::*;
use crate::groups::GroupChange;
use crate::store::tests::{stored_subscriptions, sub};
use crate::store::{CompletedJob, Receipt};
use xmpp_parsers::jid::BareJid;

fn done(key: &str, seq: u64) -> Change {
    Change::JobDone(CompletedJob {
        key: key.into(),
        seq,
        reported: false,
        report: format!("{{\"id\":\"{key}\"}}").into_bytes(),
    })
}

/// Appends b to a log that holds a and checks that the file holds both.
fn appending_b_leaves_a_and_b(mut log: Log, path: &Path) {
    log.append(&[Change::Add(sub("b@localhost"))]).unwrap();
    drop(log);
    let expected = vec![sub("a@localhost"), sub("b@localhost")];
    assert_eq!(stored_subscriptions(path), expected);
}

/// Appends `changes` to the file behind the log's back, the last one cut
/// short by three bytes: what a crash in the middle of a write leaves.
fn write_behind_the_log(path: &Path, changes: &[Change]) {
    let mut bytes = Vec::new();
    for change in changes {
        encode(change, &mut bytes);
    }
    bytes.truncate(bytes.len() - 3);
    let mut file = OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(&bytes).unwrap();
}

fn reopen(path: &Path, remember_jobs: usize) -> Contents {
    Log::open(path, remember_jobs).unwrap().1
}

#[test]
fn what_was_appended_is_there_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.store");
    let (mut log, contents) = Log::open(&path, 2).unwrap();
    assert!(contents.into_restored().subscriptions.is_empty());
    log.append(&[
        Change::Add(sub("a@localhost")),
        Change::Add(sub("b@localhost")),
        Change::JobProgress {
            key: "j".into(),
            token: b"half".to_vec(),
        },
        done("x", 1),
    ])
    .unwrap();
    log.append(&[
        Change::Remove(sub("a@localhost")),
        Change::JobReported("x".into()),
        Change::JobProgress {
            key: "k".into(),
            token: b"most".to_vec(),
        },
        done("j", 2),
        done("y", 3),
    ])
    .unwrap();
    drop(log);
    let restored = reopen(&path, 2).into_restored();
    assert_eq!(restored.subscriptions, vec![sub("b@localhost")]);
    assert_eq!(restored.progress, vec![("k".to_string(), b"most".to_vec())]);
    let completed: Vec<_> = restored.completed.iter().map(|j| &j.key).collect();
    assert_eq!(completed, ["j", "y"], "x fell out of the window");
    let x_window = reopen(&path, 3);
    assert!(x_window.completed("x").unwrap().reported);
    assert!(!x_window.completed("y").unwrap().reported);
}

#[test]
fn a_second_herald_cannot_open_the_store_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.store");
    let (log, _) = Log::open(&path, 10).unwrap();
    let second = Log::open(&path, 10).err().unwrap();
    assert!(matches!(second, StoreError::Locked { .. }), "{second}");
    // The first may be in the middle of a batch: the second cuts nothing.
    let mut file = OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(b"half a record").unwrap();
    let len = std::fs::metadata(&path).unwrap().len();
    assert!(Log::open(&path, 10).is_err());
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
    drop(log);
    Log::open(&path, 10).unwrap();
}

#[test]
fn an_unfinished_batch_at_the_end_is_cut_off_and_appending_goes_on_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.store");
    let (mut log, _) = Log::open(&path, 10).unwrap();
    log.append(&[Change::Add(sub("a@localhost"))]).unwrap();
    drop(log);
    write_behind_the_log(&path, &[Change::Add(sub("torn@localhost"))]);

    let (log, contents) = Log::open(&path, 10).unwrap();
    assert_eq!(contents.into_restored().subscriptions.len(), 1);
    appending_b_leaves_a_and_b(log, &path);
}

#[test]
fn after_a_failed_append_what_it_left_is_cut_before_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.store");
    let (mut log, _) = Log::open(&path, 10).unwrap();
    log.append(&[Change::Add(sub("a@localhost"))]).unwrap();
    // What a batch whose fsync failed may leave: whole records, never
    // committed, and part of one.
    let unsynced = ["c@localhost", "lost@localhost", "torn@localhost"];
    write_behind_the_log(&path, &unsynced.map(|user| Change::Add(sub(user))));
    log.broken = true;
    // As long as the first unsynced record: the ones after it would
    // still be there if the file were not cut back.
    appending_b_leaves_a_and_b(log, &path);
}

#[test]
fn a_grown_log_is_compacted_to_what_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.store");
    let (mut log, _) = Log::open(&path, 100).unwrap();
    log.append(&[Change::Add(sub("a@localhost"))]).unwrap();
    let report = vec![b'r'; 1_000];
    for batch in 0..100u64 {
        let mut changes = Vec::new();
        for seq in batch * 100 + 1..=batch * 100 + 100 {
            let key = format!("job-{seq}");
            changes.push(Change::JobDone(CompletedJob {
                key: key.clone(),
                seq,
                reported: false,
                report: report.clone(),
            }));
            changes.push(Change::JobReported(key));
        }
        log.append(&changes).unwrap();
        log.compact_if_grown();
    }
    let len = std::fs::metadata(&path).unwrap().len();
    assert!(len < 2 * COMPACT_SLACK, "compacted: {len} bytes");
    assert_eq!(len, log.len);
    log.append(&[Change::Add(sub("b@localhost"))]).unwrap();
    drop(log);
    let restored = reopen(&path, 100).into_restored();
    assert_eq!(restored.subscriptions.len(), 2);
    assert_eq!(restored.completed.len(), 100);
    assert_eq!(restored.completed[0].key, "job-9901", "oldest first");
    assert!(restored.completed.iter().all(|job| job.reported));
}

#[test]
fn a_flood_of_new_subscriptions_is_not_compacted_but_churn_after_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.store");
    let (mut log, _) = Log::open(&path, 10).unwrap();
    let opened = log.len;
    let mut users = 0;
    while log.len < opened + 3 * COMPACT_SLACK {
        let batch: Vec<Change> = (users..users + 1_000)
            .map(|i| Change::Add(sub(&format!("u{i}@localhost"))))
            .collect();
        users += 1_000;
        log.append(&batch).unwrap();
        log.compact_if_grown();
    }
    assert_eq!(log.compacted_len, opened, "compacted during the flood");
    // Completed jobs beyond the ten remembered are dead: once they outgrow
    // what the file held, it is compacted.
    let report = vec![b'r'; 1_000];
    let mut seq = 0;
    while log.compacted_len == opened {
        assert!(seq < 100_000, "never compacted");
        let batch: Vec<Change> = (seq..seq + 100)
            .map(|seq| {
                Change::JobDone(CompletedJob {
                    key: format!("job-{seq}"),
                    seq,
                    reported: true,
                    report: report.clone(),
                })
            })
            .collect();
        seq += 100;
        log.append(&batch).unwrap();
        log.compact_if_grown();
    }
    assert!(
        log.len < opened + 4 * COMPACT_SLACK,
        "compacted: {} bytes",
        log.len
    );
    drop(log);
    let restored = reopen(&path, 10).into_restored();
    assert_eq!(restored.subscriptions.len(), users as usize);
    assert_eq!(restored.completed.len(), 10);
}

fn members(prefix: &str, n: usize) -> Vec<BareJid> {
    (0..n)
        .map(|i| BareJid::new(&format!("{prefix}{i:06}@localhost")).unwrap())
        .collect()
}

/// (name, size) of each group the store at `path` holds.
fn stored_groups(path: &Path) -> Vec<(String, usize)> {
    let groups = reopen(path, 10).into_restored().groups;
    groups
        .iter()
        .map(|(name, members)| (name.to_string(), members.len()))
        .collect()
}

#[test]
fn groups_larger_than_a_record_are_read_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.store");
    let (mut log, _) = Log::open(&path, 10).unwrap();
    let big = members("u", 25_000);
    log.append(&[
        Change::Group(GroupChange::Put {
            name: "big".into(),
            members: big.clone(),
        }),
        Change::Group(GroupChange::Put {
            name: "gone".into(),
            members: members("g", 3),
        }),
        Change::Group(GroupChange::Add {
            name: "big".into(),
            members: members("v", 15_000),
        }),
    ])
    .unwrap();
    log.append(&[
        Change::Group(GroupChange::Remove {
            name: "big".into(),
            members: big[..12_000].to_vec(),
        }),
        Change::Group(GroupChange::Delete {
            name: "gone".into(),
        }),
        // A put replaces what was there.
        Change::Group(GroupChange::Put {
            name: "small".into(),
            members: members("s", 5),
        }),
        Change::Group(GroupChange::Put {
            name: "small".into(),
            members: members("s", 2),
        }),
    ])
    .unwrap();
    drop(log);
    assert_eq!(
        stored_groups(&path),
        [("big".to_string(), 28_000), ("small".to_string(), 2)]
    );
}

#[test]
fn compaction_keeps_the_groups_and_the_cancelled_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.store");
    let (mut log, _) = Log::open(&path, 10).unwrap();
    log.append(&[
        Change::Group(GroupChange::Put {
            name: "big".into(),
            members: members("u", 25_000),
        }),
        Change::JobCancelled("regretted".into()),
    ])
    .unwrap();
    // Churn of another group, 12 MB of it: enough to compact the log.
    let churn = members("c", 10_000);
    for _ in 0..50 {
        log.append(&[
            Change::Group(GroupChange::Put {
                name: "churn".into(),
                members: churn.clone(),
            }),
            Change::Group(GroupChange::Delete {
                name: "churn".into(),
            }),
        ])
        .unwrap();
        log.compact_if_grown();
    }
    let len = std::fs::metadata(&path).unwrap().len();
    assert!(len < COMPACT_SLACK, "compacted: {len} bytes");
    drop(log);
    assert_eq!(stored_groups(&path), [("big".to_string(), 25_000)]);
    assert_eq!(reopen(&path, 10).into_restored().cancelled, ["regretted"]);
}

#[test]
fn a_large_group_is_cut_into_records_of_at_most_a_chunk() {
    let mut bytes = Vec::new();
    let change = Change::Group(GroupChange::Put {
        name: "big".into(),
        members: members("u", 25_000),
    });
    encode(&change, &mut bytes);
    let mut records = Vec::new();
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        records.push(rest[8]);
        rest = &rest[8 + len..];
    }
    // One put (tag 6), then adds (tag 7): 10,000 + 10,000 + 5,000.
    assert_eq!(records, [6, 7, 7]);
}

#[test]
fn an_open_window_is_read_back_whole_with_who_was_reached_and_a_closed_one_not_at_all() {
    use crate::presence::Policy;
    use crate::store::{OpenedDeferral, StoredDeferral};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.store");
    let waiting: Vec<(u32, String)> = (0..25_000)
        .map(|i| (i * 2, format!("u{i}@localhost")))
        .collect();
    let opened = |key: &str| OpenedDeferral {
        key: key.into(),
        until_ms: 1_796_558_460_000,
        policy: Policy::Online,
        names: true,
        template: b"the message".to_vec(),
        waiting: waiting.clone(),
        receipts: Some(3),
    };
    let receipted: Vec<Receipt> = [(1, "u0@localhost"), (3, "x@localhost")]
        .into_iter()
        .map(|(position, sender)| Receipt {
            position,
            sender: Some(sender.into()),
        })
        .collect();
    let (mut log, _) = Log::open(&path, 10).unwrap();
    log.append(&[
        Change::DeferralOpened(opened("open")),
        Change::DeferralOpened(opened("closed")),
        Change::DeferredReached {
            key: "open".into(),
            positions: vec![2, 4, 7],
        },
        Change::DeferredReceipts {
            key: "open".into(),
            receipts: receipted.clone(),
        },
        Change::DeferralClosed("closed".into()),
    ])
    .unwrap();
    drop(log);
    let reached = |restored: crate::core::Restored| restored.deferrals;
    let deferrals = reached(reopen(&path, 10).into_restored());
    let late = vec![(2, "u1@localhost".into()), (4, "u2@localhost".into())];
    let expected = StoredDeferral {
        opened: OpenedDeferral {
            waiting: (waiting.iter())
                .filter(|(position, _)| ![2, 4].contains(position))
                .cloned()
                .collect(),
            ..opened("open")
        },
        late,
        receipted,
    };
    assert_eq!(
        deferrals,
        std::slice::from_ref(&expected),
        "position 7 never waited"
    );
    // Compacted: the same.
    let mut compacted = Contents::new(10);
    for change in reopen(&path, 10).changes() {
        compacted.apply(change);
    }
    assert_eq!(reached(compacted.into_restored()), [expected]);
}

#[test]
fn receipts_by_position_alone_as_written_before_senders_were_kept_still_read() {
    let mut payload = vec![15];
    payload.extend_from_slice(&1u32.to_le_bytes());
    payload.extend_from_slice(b"w");
    for n in [2u32, 5, 6] {
        payload.extend_from_slice(&n.to_le_bytes());
    }
    let receipts = [5, 6].map(|position| Receipt {
        position,
        sender: None,
    });
    let expected = Change::DeferredReceipts {
        key: "w".into(),
        receipts: receipts.to_vec(),
    };
    let mut contacts = ContactCache::default();
    assert_eq!(
        decode(&payload, &mut contacts),
        Some(Some(expected.clone()))
    );
    let mut written = Vec::new();
    encode(&expected, &mut written);
    assert_eq!(&written[8..], payload, "and are still written so");
}
