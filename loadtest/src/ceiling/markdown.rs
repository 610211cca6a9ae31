//! The Markdown tables `ceiling` prints once every size has run.

use std::fmt::Write as _;

use super::{overtake, SizeResult};

pub(super) fn markdown(results: &[SizeResult]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n| users | flood online s | absorbed s | Herald CPU s | RSS before → after → settled MB | bytes/resource after / settled | store MB | fan-out peak over idle MB |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in results {
        let f = &r.flood;
        let _ = writeln!(
            out,
            "| {} | {:.1} | {:.1} | {:.1} | {:.0} → {:.0} → {:.0} | {:.0} / {:.0} | {:.0} | {:.0} |",
            r.users,
            f.online_secs,
            f.absorbed_secs,
            f.herald_cpu_secs,
            f.rss_before_mb,
            f.rss_absorbed_mb,
            f.rss_settled_mb,
            f.bytes_per_resource,
            f.bytes_per_resource_settled,
            f.store_mb,
            r.fanout_peak_over_idle_mb
        );
    }
    let _ = writeln!(
        out,
        "\n| users | phase | jobs × recipients | delivered | stanzas/s | Herald CPU µs/msg | Herald cores | loop thread cores | sink CPU s |"
    );
    let _ = writeln!(out, "|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in results {
        for p in &r.phases {
            let _ = writeln!(
                out,
                "| {} | {} | {} × {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} |",
                r.users,
                p.name,
                p.jobs,
                p.recipients_per_job,
                p.delivered,
                p.stanzas_per_sec,
                p.herald_cpu_us_per_msg,
                p.herald_cores,
                p.loop_thread_cores,
                p.sink_cpu_secs
            );
        }
    }
    let _ = writeln!(
        out,
        "\n| users | one-recipient jobs | Herald jobs/s | bare consumer jobs/s | Herald / bare | broker CPU µs/job: Herald / bare |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|");
    for r in results {
        let Some(single) = r.phases.iter().find(|p| p.name == "single") else {
            continue;
        };
        let herald = single.jobs as f64 / single.wall_secs.max(1e-9);
        let broker = r.broker_cpu_us_per_job.as_ref().map_or("–".into(), |cpu| {
            format!("{:.0} / {:.0}", cpu.herald, cpu.bare)
        });
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.0} | {:.0}% | {broker} |",
            r.users,
            single.jobs,
            herald,
            r.bare.jobs_per_sec,
            100.0 * herald / r.bare.jobs_per_sec.max(1e-9)
        );
    }
    let overtakes = results
        .iter()
        .flat_map(|r| r.overtakes.iter().map(|o| (r.users, o)));
    out.push_str(&overtake::markdown(overtakes));
    out
}
