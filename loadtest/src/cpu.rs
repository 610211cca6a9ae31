//! The CPU each party to a run (component, server, load test, broker) and
//! the whole machine used in a run's measured window.

use crate::procstat;
use crate::report::RunResult;

/// CPU seconds of some processes (a server's nodes) since a first reading.
struct CpuWindow {
    pids: Vec<u32>,
    start: Option<f64>,
}

impl CpuWindow {
    fn start(pids: &[u32]) -> CpuWindow {
        CpuWindow {
            pids: pids.to_vec(),
            start: Self::now(pids),
        }
    }

    /// Their CPU seconds now, if there are any and all can be read.
    fn now(pids: &[u32]) -> Option<f64> {
        let seconds: Option<Vec<f64>> =
            pids.iter().map(|&pid| procstat::cpu_seconds(pid)).collect();
        seconds.filter(|s| !s.is_empty()).map(|s| s.iter().sum())
    }

    fn used(&self) -> Option<f64> {
        Some(Self::now(&self.pids)? - self.start?)
    }
}

/// The CPU used in the measured window by every party to a run, and by
/// the whole machine: whether the machine, not one party, is the limit.
pub struct CpuWindows {
    component: CpuWindow,
    server: CpuWindow,
    loadtest: CpuWindow,
    broker: CpuWindow,
    machine: Option<(u64, u64)>,
}

impl CpuWindows {
    /// `server`: the server's pid, or every node's.
    pub fn start(component: Option<u32>, server: &[u32], broker: Option<u32>) -> CpuWindows {
        CpuWindows {
            component: CpuWindow::start(component.as_slice()),
            server: CpuWindow::start(server),
            loadtest: CpuWindow::start(&[std::process::id()]),
            broker: CpuWindow::start(broker.as_slice()),
            machine: procstat::machine_ticks(),
        }
    }

    pub fn record(&self, result: &mut RunResult) {
        result.component_cpu_s = self.component.used();
        result.server_cpu_s = self.server.used();
        result.loadtest_cpu_s = self.loadtest.used();
        result.broker_cpu_s = self.broker.used();
        result.machine_busy = match (self.machine, procstat::machine_ticks()) {
            (Some((busy0, total0)), Some((busy1, total1))) if total1 > total0 => {
                Some((busy1 - busy0) as f64 / (total1 - total0) as f64)
            }
            _ => None,
        };
    }
}
