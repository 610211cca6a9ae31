//! The alert rules and the Grafana dashboard in deploy/ query metrics Herald
//! has. Prometheus answers a query for a misspelt name or label value with
//! nothing, so such an alert never fires and such a panel stays empty
//! without any error; and a histogram alert whose threshold is not below the
//! highest finite bucket can never fire (histogram_quantile answers at most
//! that bound).

use std::collections::BTreeSet;
use std::path::Path;

use herald::metrics::Metrics;

/// Prometheus adds these at scrape time; Herald does not expose them.
const SCRAPE_LABELS: [&str; 2] = ["instance", "job"];

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What a fresh Herald exposes. Every labelled series exists from the start
/// (the counters are created with their labels), so no metric need be touched.
fn exposition() -> String {
    String::from_utf8(Metrics::new().render()).unwrap()
}

/// Series names Herald exposes: each family from its `# TYPE` line, a
/// histogram as its `_bucket`, `_sum` and `_count` series.
fn exposed_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let (name, kind) = line.split_once(' ').unwrap();
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        } else {
            names.insert(name.to_string());
        }
    }
    names
}

/// A `herald_*` name in a query, with its `label="value"` matchers.
#[derive(Debug)]
struct Reference {
    name: String,
    equal: Vec<(String, String)>,
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every `herald_*` name in `text`, with the labels it must have exactly
/// (`=`; regular expressions and negations are not checked).
fn references(text: &str) -> Vec<Reference> {
    let mut found = Vec::new();
    for (at, _) in text.match_indices("herald_") {
        if text[..at].ends_with(is_name_char) {
            continue;
        }
        let tail = &text[at..];
        let end = tail.find(|c: char| !is_name_char(c)).unwrap_or(tail.len());
        let mut equal = Vec::new();
        if let Some(selector) = tail[end..].strip_prefix('{') {
            let selector = &selector[..selector.find('}').expect("closed selector")];
            for matcher in selector.split(',') {
                let Some((label, value)) = matcher.split_once('=') else {
                    continue;
                };
                let label = label.trim();
                if label.ends_with('!') || value.starts_with('~') {
                    continue;
                }
                if !SCRAPE_LABELS.contains(&label) {
                    equal.push((
                        label.to_string(),
                        value.trim().trim_matches('"').to_string(),
                    ));
                }
            }
        }
        found.push(Reference {
            name: tail[..end].to_string(),
            equal,
        });
    }
    found
}

/// The dashboard's strings (queries, template variables, descriptions).
fn dashboard_strings(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| dashboard_strings(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| dashboard_strings(v, out)),
        _ => {}
    }
}

/// Rules, their promtool tests and the dashboard, each reference with its file.
fn deploy_references() -> Vec<(&'static str, Reference)> {
    let mut all = Vec::new();
    for file in [
        "deploy/prometheus/alerts.yml",
        "deploy/prometheus/alerts.test.yml",
    ] {
        all.extend(references(&read(file)).into_iter().map(|r| (file, r)));
    }
    let file = "deploy/grafana/herald-dashboard.json";
    let mut strings = Vec::new();
    dashboard_strings(&serde_json::from_str(&read(file)).unwrap(), &mut strings);
    for s in strings {
        all.extend(references(&s).into_iter().map(|r| (file, r)));
    }
    all
}

#[test]
fn every_metric_the_rules_and_the_dashboard_query_exists() {
    let exposition = exposition();
    let names = exposed_names(&exposition);
    let references = deploy_references();
    // The scan found the queries at all (a broken scan passes vacuously).
    assert!(references.len() > 30, "{references:?}");
    let mut wrong = Vec::new();
    for (file, reference) in &references {
        if !names.contains(&reference.name) {
            wrong.push(format!("{file}: no metric {}", reference.name));
            continue;
        }
        let series = format!("{}{{", reference.name);
        for (label, value) in &reference.equal {
            let matcher = format!("{label}=\"{value}\"");
            if !exposition
                .lines()
                .any(|l| l.starts_with(&series) && l.contains(&matcher))
            {
                wrong.push(format!("{file}: no series {series}{matcher}}}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// Each `histogram_quantile(...) > threshold` in the rules, as (metric, threshold).
fn quantile_thresholds(rules: &str) -> Vec<(String, f64)> {
    let mut found = Vec::new();
    for (at, call) in rules.match_indices("histogram_quantile(") {
        let inner_start = at + call.len();
        let mut depth = 1;
        let close = rules[inner_start..]
            .char_indices()
            .find(|&(_, c)| {
                depth += match c {
                    '(' => 1,
                    ')' => -1,
                    _ => 0,
                };
                depth == 0
            })
            .map(|(i, _)| inner_start + i)
            .expect("balanced parentheses");
        let bucket = references(&rules[inner_start..close]).swap_remove(0).name;
        let comparison = rules[close + 1..].trim_start();
        let threshold = comparison
            .strip_prefix('>')
            .expect("an alert compares the quantile with >")
            .trim_start_matches('=')
            .split_whitespace()
            .next()
            .unwrap();
        let metric = bucket
            .strip_suffix("_bucket")
            .expect("a quantile of buckets");
        found.push((metric.to_string(), threshold.parse().unwrap()));
    }
    found
}

#[test]
fn histogram_alerts_have_buckets_well_above_their_thresholds() {
    let exposition = exposition();
    let thresholds = quantile_thresholds(&read("deploy/prometheus/alerts.yml"));
    assert!(thresholds.len() >= 2, "{thresholds:?}");
    for (metric, threshold) in thresholds {
        let prefix = format!("{metric}_bucket{{le=\"");
        let highest = exposition
            .lines()
            .filter_map(|l| l.strip_prefix(prefix.as_str()))
            .filter_map(|rest| rest.split('"').next()?.parse::<f64>().ok())
            .filter(|bound| bound.is_finite())
            .fold(0.0, f64::max);
        // At twice the threshold the quantile has room to exceed it and its
        // value in the alert still says how far.
        assert!(
            highest >= 2.0 * threshold,
            "{metric}: highest finite bucket {highest} s, alert at {threshold} s"
        );
    }
}
