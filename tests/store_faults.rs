//! A store that refuses writes never lets a job be acknowledged: its
//! report waits (so the job stays with the broker), Herald goes unready and
//! counts `herald_store_errors_total`, and once the disk has room again the
//! commit is retried and the job reported, once. The store lives on a
//! small tmpfs of the test's own that the test fills up: a real file
//! system refusing real writes (the test runs as root, as CI does). The
//! store appends, and an append that fits in the file's last page needs no
//! room, so the test sends jobs until one finds the disk full.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use herald_testkit::events::{next_report, report_within};
use herald_testkit::prosody::Prosody;
use herald_testkit::stack::Stack;
use serde_json::json;

/// A tmpfs mounted for one test, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("running mount");
        assert!(status.success(), "mounting a tmpfs needs root: {status}");
        SmallDisk { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the disk has no room left.
    fn fill(&self) -> PathBuf {
        let filler = self.path().join("filler");
        let status = Command::new("dd")
            .args(["if=/dev/zero", "bs=4k"])
            .arg(format!("of={}", filler.display()))
            .stderr(std::process::Stdio::null())
            .status()
            .expect("running dd");
        assert!(!status.success(), "dd stops when the disk is full");
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_holds_the_report_until_the_store_can_commit_and_nothing_is_lost() {
    let disk = SmallDisk::mount("8m");
    let store = disk.path().join("herald.store");
    let store = store.to_str().unwrap();
    let mut stack =
        Stack::<Prosody>::start_with_env(&["alice"], &[("HERALD_STORE__PATH", store)]).await;
    let mut alice = stack.online("alice").await;
    assert_eq!(stack.metric("herald_store_errors_total"), 0.0);

    let filler = disk.fill();
    let mut held = None;
    for n in 0..40 {
        let id = format!("disk-full-{n}");
        let job = json!({"id": id, "to": ["alice@localhost"], "body": "despite the disk"});
        stack.publish(job).await;
        // The message goes out (the server confirms it) whether or not its
        // completion can be remembered.
        let message = alice.next_message(Duration::from_secs(20)).await;
        assert_eq!(message.expect("the message").1, "despite the disk");
        let report = report_within(&mut stack.reports, &id, Duration::from_secs(3)).await;
        if report.is_none() {
            held = Some(id);
            break;
        }
        assert_eq!(
            stack.metric("herald_store_errors_total"),
            0.0,
            "reported despite an error"
        );
    }
    // Its completion cannot be remembered: no report, no acknowledgement.
    let held = held.expect("the disk refused a commit within 40 jobs");
    let early = report_within(&mut stack.reports, &held, Duration::from_secs(4)).await;
    assert_eq!(early, None, "reported before its completion was stored");
    assert!(stack.metric("herald_store_errors_total") >= 1.0);
    assert_eq!(stack.metric("herald_store_failing"), 1.0);
    stack.herald.wait_readyz(503, Duration::from_secs(10));
    assert!(stack.herald.is_running());

    std::fs::remove_file(filler).unwrap();
    let report = next_report(&mut stack.reports, &held).await;
    assert_eq!(report["sent"], 1, "{report}");
    assert_eq!(report.get("duplicate"), None, "{report}");
    stack.herald.wait_readyz(200, Duration::from_secs(30));
    assert_eq!(stack.metric("herald_store_failing"), 0.0);
    alice.expect_no_message(Duration::from_secs(2)).await;
    assert_eq!(stack.herald.stop(), Some(0));
    // Acknowledged: a restarted Herald is not handed the job again.
    stack.herald.restart();
    let again = report_within(&mut stack.reports, &held, Duration::from_secs(5)).await;
    assert_eq!(again, None, "one report, the job acknowledged");
}
