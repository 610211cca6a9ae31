//! CPU time and memory (now and at its peak) of a process, the whole machine's CPU use and
//! load average, the process listening on a port, and this process's
//! open-files limit, read from /proc (Linux).

use std::fs;

/// Clock ticks per second in /proc/<pid>/stat (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// User plus system CPU seconds used so far by `pid` (threads included).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    stat_cpu_seconds(&format!("/proc/{pid}/stat"))
}

/// User plus system CPU seconds in a stat file: a process's
/// (`/proc/<pid>/stat`) or one thread's (`/proc/<pid>/task/<tid>/stat`).
pub fn stat_cpu_seconds(path: &str) -> Option<f64> {
    parse_cpu_seconds(&fs::read_to_string(path).ok()?)
}

/// The peak resident set size (VmHWM) of `pid`, in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_kib(
        &fs::read_to_string(format!("/proc/{pid}/status")).ok()?,
        "VmHWM:",
    )
}

/// The resident set size (VmRSS) of `pid` now, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(
        &fs::read_to_string(format!("/proc/{pid}/status")).ok()?,
        "VmRSS:",
    )
}

/// Starts the peak resident set size of `pid` over from its size now, so
/// that [`peak_rss_kib`] read later is the peak since.
pub fn reset_peak_rss(pid: u32) -> std::io::Result<()> {
    fs::write(format!("/proc/{pid}/clear_refs"), "5")
}

/// The soft limit on open files of this process (children inherit it).
pub fn open_files_limit() -> Option<u64> {
    let limits = fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Busy and total clock ticks of all CPUs so far (the `cpu` line of
/// /proc/stat; idle and iowait count as not busy).
pub fn machine_ticks() -> Option<(u64, u64)> {
    parse_machine_ticks(&fs::read_to_string("/proc/stat").ok()?)
}

/// The load average over 1, 5 and 15 minutes (/proc/loadavg): how many
/// processes wanted a CPU, on a machine shared with other work.
pub fn load_average() -> Option<[f64; 3]> {
    parse_load_average(&fs::read_to_string("/proc/loadavg").ok()?)
}

fn parse_load_average(loadavg: &str) -> Option<[f64; 3]> {
    let mut fields = loadavg.split_whitespace().map(|f| f.parse().ok());
    Some([fields.next()??, fields.next()??, fields.next()??])
}

fn parse_machine_ticks(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]:
    // guest time is already counted in user and nice.
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// The process with a TCP socket listening on `port` (IPv4 or IPv6), found
/// through the socket's inode in /proc/net/tcp* and the processes' open files.
pub fn listener_pid(port: u16) -> Option<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = fs::read_to_string(table) {
            inodes.extend(listening_inodes(&text, port));
        }
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = fs::read_link(fd.path()) {
                if wanted.iter().any(|w| target.as_os_str() == w.as_str()) {
                    return Some(pid);
                }
            }
        }
    }
    None
}

/// Inodes of the sockets in LISTEN state (0A) on `port` in a /proc/net/tcp table.
fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    let port = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let listening = f.get(1)?.ends_with(&port) && *f.get(3)? == "0A";
            listening.then(|| f.get(9)?.parse().ok()).flatten()
        })
        .collect()
}

/// utime + stime (fields 14 and 15) of a /proc/<pid>/stat line, in seconds.
/// The command name (field 2) may contain spaces and parentheses, so the
/// fields are counted from the last `)`.
fn parse_cpu_seconds(stat: &str) -> Option<f64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // fields[0] is field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SECOND)
}

/// A `Key:  N kB` value of a /proc/<pid>/status text, in KiB.
pub fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_from_stat_line_with_odd_command_name() {
        let stat = "4242 (beam.smp (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 \
                    30 0 12345 1000000 500 18446744073709551615";
        assert_eq!(parse_cpu_seconds(stat), Some(3.25));
        assert_eq!(parse_cpu_seconds("1 (x) S 1 2"), None);
    }

    #[test]
    fn peak_rss_from_status() {
        let status =
            "Name:\therald\nVmPeak:\t  200000 kB\nVmHWM:\t   51234 kB\nVmRSS:\t 40000 kB\n";
        assert_eq!(status_kib(status, "VmHWM:"), Some(51_234));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn machine_ticks_leave_out_idle_and_iowait() {
        let stat = "cpu  100 5 50 800 40 1 2 2 0 0\ncpu0 50 2 25 400 20 0 1 1 0 0\n";
        assert_eq!(parse_machine_ticks(stat), Some((160, 1000)));
        assert_eq!(parse_machine_ticks("intr 1 2\n"), None);
    }

    #[test]
    fn finds_the_listening_socket_only() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1628 00000000:0000 0A 00000000:00000000 00:00000000 00000000   107        0 4242 1\n\
   1: 0100007F:1628 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000   107        0 4343 1\n\
   2: 0100007F:1629 00000000:0000 0A 00000000:00000000 00:00000000 00000000   107        0 4444 1\n";
        assert_eq!(listening_inodes(table, 5672), vec![4242]);
    }

    #[test]
    fn finds_this_process_by_its_listening_port() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(listener_pid(port), Some(std::process::id()));
        assert!(machine_ticks().is_some_and(|(busy, total)| busy <= total && total > 0));
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(cpu_seconds(me).is_some());
        assert!(peak_rss_kib(me).unwrap() > 0);
        assert!(open_files_limit().unwrap() > 0);
    }

    #[test]
    fn reads_the_three_load_averages() {
        assert_eq!(
            parse_load_average("1.78 0.69 0.26 3/412 8376\n"),
            Some([1.78, 0.69, 0.26])
        );
        assert_eq!(parse_load_average("1.78 0.69"), None);
    }
}
