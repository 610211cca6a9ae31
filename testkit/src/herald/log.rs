//! The output of a process a harness started (Herald, or the load test's
//! Node.js baseline), kept line by line for the waits and error messages of
//! tests and load-test runs.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::process::Child;
use std::sync::{Arc, Mutex};

/// Lines of a process's stdout and stderr, in arrival order.
#[derive(Clone)]
pub struct ProcessLog {
    lines: Arc<Mutex<VecDeque<String>>>,
    /// Most lines kept (the oldest go first); `None`: all of them.
    keep: Option<usize>,
}

impl ProcessLog {
    /// Keeps every line, or only the last `keep` (a load-test run logs for
    /// minutes).
    pub fn new(keep: Option<usize>) -> ProcessLog {
        ProcessLog {
            lines: Arc::new(Mutex::new(VecDeque::new())),
            keep,
        }
    }

    /// Reads `child`'s piped stdout and stderr into the log, on a thread
    /// each, until they close.
    pub fn capture(&self, child: &mut Child) {
        let pipes: [Option<Box<dyn Read + Send>>; 2] = [
            child.stdout.take().map(|s| Box::new(s) as _),
            child.stderr.take().map(|s| Box::new(s) as _),
        ];
        for pipe in pipes.into_iter().flatten() {
            let log = self.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    log.push(line);
                }
            });
        }
    }

    fn push(&self, line: String) {
        let mut lines = self.lines.lock().unwrap();
        if self.keep.is_some_and(|keep| lines.len() >= keep) {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// Lines that contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        let lines = self.lines.lock().unwrap();
        lines.iter().filter(|l| l.contains(needle)).count()
    }

    /// Every line that contains `needle`, oldest first.
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }

    /// The first line that contains `needle`.
    pub fn first(&self, needle: &str) -> Option<String> {
        let lines = self.lines.lock().unwrap();
        lines.iter().find(|l| l.contains(needle)).cloned()
    }

    /// The latest line that contains `needle`.
    pub fn last(&self, needle: &str) -> Option<String> {
        let lines = self.lines.lock().unwrap();
        lines.iter().rev().find(|l| l.contains(needle)).cloned()
    }

    /// The last `count` lines.
    pub fn tail(&self, count: usize) -> String {
        let lines = self.lines.lock().unwrap();
        let skip = lines.len().saturating_sub(count);
        let tail: Vec<&str> = lines.iter().skip(skip).map(String::as_str).collect();
        tail.join("\n")
    }

    /// Every line kept.
    pub fn text(&self) -> String {
        self.tail(usize::MAX)
    }

    /// The address Herald serves /metrics on, from the latest of its
    /// "serving /metrics" lines (a restarted Herald picks a new port).
    pub fn metrics_addr(&self) -> Result<String, String> {
        const LINE: &str = "serving /metrics";
        let line = self
            .last(LINE)
            .ok_or_else(|| format!("no {LINE:?} line in Herald's log"))?;
        line.split("address=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_string)
            .ok_or_else(|| format!("no address in {line:?}"))
    }
}
