//! `GET /metrics` as Prometheus and its operators see it: every series the
//! dashboards of the hand-written exposition used is still there with its
//! type and labels, `promtool check metrics` accepts a scrape taken after a
//! real publish (the binary, the simulator in its real-hub mode), the
//! process series, and the connection gauges.

use crate::common;
use crate::fixtures::{Fill, tarball};
use common::{Service, Sim, http, wait_until};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The series of the hand-written exposition (before the `prometheus`
/// crate), taken from a scrape of that binary after a publish: name, type,
/// label names. Dashboards and alerts use them; each must still be there.
/// `hone_build_request_duration_seconds` has since gained a `route` label
/// (checked apart); `hone_build_store_up` had no TYPE line (untyped) and is
/// a gauge now.
const SERIES_OF_THE_HAND_WRITTEN_EXPOSITION: &[(&str, &str, &[&str])] = &[
    ("hone_build_requests_total", "counter", &["route", "status"]),
    (
        "hone_build_request_duration_seconds",
        "histogram",
        &["route"],
    ),
    ("hone_build_uploads_total", "counter", &[]),
    ("hone_build_artifacts_stored_total", "counter", &[]),
    ("hone_build_artifact_bytes_total", "counter", &[]),
    ("hone_build_overload_rejections_total", "counter", &[]),
    ("hone_build_jobs_followed_total", "counter", &[]),
    ("hone_build_follow_reconnects_total", "counter", &[]),
    ("hone_build_artifacts_fetched_total", "counter", &[]),
    ("hone_build_artifact_download_bytes_total", "counter", &[]),
    ("hone_build_hub_submissions_total", "counter", &["outcome"]),
    ("hone_build_resubmissions_total", "counter", &["cause"]),
    ("hone_build_jobs", "gauge", &["state"]),
    ("hone_build_store_up", "gauge", &[]),
    // Added to the hand-written exposition with build logs (#12).
    (
        "hone_build_build_duration_seconds",
        "histogram",
        &["platform"],
    ),
    ("hone_build_hub_queue_seconds", "histogram", &["platform"]),
    ("hone_build_log_bytes_stored_total", "counter", &[]),
];

/// Series added with the `prometheus` crate.
const ADDED_SERIES: &[(&str, &str, &[&str])] = &[
    ("process_cpu_seconds_total", "counter", &[]),
    ("process_max_fds", "gauge", &[]),
    ("process_open_fds", "gauge", &[]),
    ("process_resident_memory_bytes", "gauge", &[]),
    ("process_start_time_seconds", "gauge", &[]),
    ("process_threads", "gauge", &[]),
    ("process_virtual_memory_bytes", "gauge", &[]),
    ("hone_build_connections_open", "gauge", &[]),
    ("hone_build_connections_limit", "gauge", &[]),
    ("hone_build_connections_refused_total", "counter", &["cap"]),
];

/// One family of a scrape: its TYPE and the label names of each sample
/// (`le` of histogram buckets left out), by sample name.
#[derive(Debug, Default)]
struct Family {
    kind: Option<String>,
    help: bool,
    /// Sample name (`x`, `x_bucket`, `x_sum`, `x_count`) → label name sets.
    samples: BTreeMap<String, BTreeSet<Vec<String>>>,
}

/// Parses Prometheus text enough to compare families: `# HELP`, `# TYPE`,
/// and each sample's name, label names and value (which must parse).
fn families(text: &str) -> BTreeMap<String, Family> {
    let mut out: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            out.entry(name.into()).or_default().help = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            out.entry(name.into()).or_default().kind = Some(kind.into());
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment {line}");
        let (series, value) = line.rsplit_once(' ').expect("series value");
        assert!(value.parse::<f64>().is_ok(), "bad value in {line}");
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.strip_suffix('}').expect("closing brace")),
            None => (series, ""),
        };
        let mut names: Vec<String> = labels
            .split(',')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').expect("label=value").0.to_string())
            .filter(|l| l != "le")
            .collect();
        names.sort();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|base| out.get(*base).and_then(|f| f.kind.as_deref()) == Some("histogram"))
            .unwrap_or(name);
        out.entry(family.into())
            .or_default()
            .samples
            .entry(name.into())
            .or_default()
            .insert(names);
    }
    out
}

fn labels(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// The value of the sample `series` (name with labels).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

fn scrape(svc: &Service) -> String {
    let r = http("GET", &svc.url("/metrics"), &[], None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        r.header("content-type")
    );
    r.text()
}

/// `promtool check metrics` on `text`: (success, its output). Panics when
/// promtool is missing: CI installs it (`.ci/run`), and a check that did not
/// run must not pass.
fn promtool_check(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "promtool is needed for this test (Debian: apt-get install --no-install-recommends prometheus): {e}"
            )
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

/// Publishes one plugin for two platforms through the simulator in its
/// real-hub mode (followed over the WebSocket, downloaded), then checks the
/// scrape: every series of before is there, the added ones are, every
/// family has HELP, TYPE and samples, and promtool accepts it.
#[test]
fn a_scrape_after_a_publish_keeps_every_series_and_passes_promtool() {
    let sim = Sim::start_real(&["--build-delay-ms", "100"]);
    let svc = Service::builder()
        .set("PERRY_HUB_URL", sim.url())
        .set("PERRY_HUB_WS_URL", sim.ws_url())
        .set("PERRY_HUB_LICENSE_KEY", "sim-license")
        .set("BIND", "127.0.0.1")
        .start();
    let r = http(
        "POST",
        &svc.url("/upload?name=prom-plugin&version=1.0.0&platforms=linux,macos"),
        &[],
        Some(&tarball("prom", Fill::Unique)),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let done = wait_until(Duration::from_secs(30), || {
        http("GET", &svc.url("/status/prom-plugin/1.0.0"), &[], None).json()["overall"]
            == "completed"
    });
    assert!(done, "not completed; log:\n{}", svc.log());
    // A job shows completed a moment before its download is counted.
    let mut text = String::new();
    let counted = wait_until(Duration::from_secs(5), || {
        text = scrape(&svc);
        value(&text, "hone_build_artifacts_fetched_total") == Some(2.0)
    });
    assert!(counted, "{text}");
    http("GET", &svc.url("/nope"), &[], None);
    let text = scrape(&svc);
    let got = families(&text);

    let mut missing = Vec::new();
    for (name, kind, label_names) in SERIES_OF_THE_HAND_WRITTEN_EXPOSITION
        .iter()
        .chain(ADDED_SERIES)
    {
        let Some(f) = got.get(*name) else {
            missing.push(format!("{name}: absent"));
            continue;
        };
        if f.kind.as_deref() != Some(*kind) {
            missing.push(format!("{name}: type {:?}, not {kind}", f.kind));
        }
        let sample_name = if *kind == "histogram" {
            format!("{name}_bucket")
        } else {
            name.to_string()
        };
        let sets = f.samples.get(&sample_name).cloned().unwrap_or_default();
        if !sets.contains(&labels(label_names)) {
            missing.push(format!(
                "{name}: no sample labelled {label_names:?} ({sets:?})"
            ));
        }
    }
    assert!(missing.is_empty(), "{missing:#?}\n{text}");

    // The histogram: its old series (no label but `le`) now by route, the
    // route names of the router (never a path).
    let d = &got["hone_build_request_duration_seconds"];
    assert_eq!(d.kind.as_deref(), Some("histogram"));
    for s in ["_bucket", "_sum", "_count"] {
        let key = format!("hone_build_request_duration_seconds{s}");
        assert_eq!(
            d.samples.get(&key),
            Some(&BTreeSet::from([labels(&["route"])])),
            "{key}\n{text}"
        );
    }
    for route in ["upload", "status", "unknown"] {
        let count = value(
            &text,
            &format!(r#"hone_build_request_duration_seconds_count{{route="{route}"}}"#),
        );
        assert!(
            count.is_some_and(|c| c >= 1.0),
            "{route}: {count:?}\n{text}"
        );
    }
    assert!(
        !text.contains("route=\"/"),
        "a path as a route label:\n{text}"
    );

    // Every family has HELP, TYPE and samples; nothing is left untyped.
    for (name, f) in &got {
        assert!(f.help, "{name} has no HELP\n{text}");
        assert!(f.kind.is_some(), "{name} has no TYPE\n{text}");
        assert!(!f.samples.is_empty(), "{name} has no sample\n{text}");
    }

    // What this publish did, in figures.
    let v = |s: &str| value(&text, s).unwrap_or_else(|| panic!("{s}\n{text}"));
    assert_eq!(v("hone_build_uploads_total"), 1.0, "{text}");
    assert_eq!(v("hone_build_jobs_followed_total"), 2.0, "{text}");
    assert_eq!(v("hone_build_artifacts_fetched_total"), 2.0, "{text}");
    assert!(
        v("hone_build_artifact_download_bytes_total") > 0.0,
        "{text}"
    );
    assert_eq!(v(r#"hone_build_jobs{state="completed"}"#), 2.0, "{text}");
    assert_eq!(
        v(r#"hone_build_hub_submissions_total{outcome="accepted"}"#),
        2.0,
        "{text}"
    );
    assert_eq!(
        v(r#"hone_build_hub_submissions_total{outcome="failed"}"#),
        0.0,
        "{text}"
    );
    assert_eq!(v("hone_build_store_up"), 1.0, "{text}");
    assert!(v("process_resident_memory_bytes") > 1e6, "{text}");
    assert!(v("process_open_fds") >= 3.0, "{text}");
    assert!(v("process_max_fds") >= v("process_open_fds"), "{text}");
    let start = v("process_start_time_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (now - 600.0..=now + 1.0).contains(&start),
        "start {start}, now {now}"
    );
    assert!(
        v("hone_build_connections_open") >= 1.0,
        "this scrape's own: {text}"
    );

    let (ok, said) = promtool_check(&text);
    assert!(ok, "promtool check metrics failed:\n{said}\non:\n{text}");
    assert_eq!(said.trim(), "", "promtool had remarks:\n{said}");

    // docs/monitoring.md names only series of this scrape.
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/monitoring.md"))
        .unwrap();
    let named = series_named_in(&doc);
    assert!(named.len() >= 10, "{named:?}");
    for name in &named {
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|b| got.contains_key(*b))
            .unwrap_or(name);
        assert!(
            got.contains_key(base),
            "docs/monitoring.md names {name}, not in:\n{text}"
        );
    }
}

/// The series names (`hone_build_…`, `process_…`) a text mentions.
fn series_named_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for prefix in ["hone_build_", "process_"] {
        let mut rest = text;
        while let Some(at) = rest.find(prefix) {
            let before = rest[..at].chars().last();
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(tail.len());
            // (`process_*` names the family of series, not one.)
            let name = &tail[..end];
            if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.ends_with('_')
            {
                out.insert(name.to_string());
            }
            rest = &tail[end..];
        }
    }
    out
}

/// The alerting rules of docs/monitoring.md are valid rules for promtool.
#[test]
fn the_documented_alerting_rules_pass_promtool_check_rules() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/monitoring.md"))
        .unwrap();
    let section = doc
        .split_once("## Alerting rules")
        .expect("an Alerting rules section")
        .1;
    let rules = section
        .split_once("```yaml\n")
        .and_then(|(_, r)| r.split_once("```"))
        .expect("a yaml block")
        .0;
    for alert in [
        "HoneBuildJobsFailing",
        "HoneBuildHubUnreachable",
        "HoneBuildFileDescriptorsNearLimit",
    ] {
        assert!(rules.contains(&format!("alert: {alert}")), "{alert}");
    }
    assert!(rules.contains("process_open_fds") && rules.contains("process_max_fds"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hone-build.yml");
    std::fs::write(&file, rules).unwrap();
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("promtool is needed for this test: {e}"));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}\n{rules}");
    assert!(said.contains("SUCCESS: 8 rules found"), "{said}");
}

/// promtool is a real check: it refuses a counter without `_total` and a
/// family without HELP (so the test above can fail).
#[test]
fn promtool_refuses_what_it_should() {
    let (ok, said) = promtool_check(
        "# HELP hone_build_x things\n# TYPE hone_build_x counter\nhone_build_x 1\n\
         # TYPE hone_build_y gauge\nhone_build_y 2\n",
    );
    assert!(!ok, "{said}");
    assert!(said.contains("hone_build_x"), "{said}");
    assert!(said.contains("hone_build_y"), "{said}");
}

/// How many of `conns` were answered `503` and closed (refused past a
/// cap); the others were admitted and stay silent (no request sent).
fn refused_answers(conns: &mut [TcpStream]) -> usize {
    let mut refused = 0;
    for c in conns {
        let (got, ended) =
            common::read_until(c, Duration::from_millis(1500), Vec::new(), |_| false);
        if ended && String::from_utf8_lossy(&got).starts_with("HTTP/1.1 503") {
            refused += 1;
        }
    }
    refused
}

/// Connections held open show in `hone_build_connections_open`; those past
/// a client address's share are counted in
/// `hone_build_connections_refused_total{cap="per_client"}`.
#[test]
fn connection_gauges_count_open_and_refused_connections() {
    // 20 connections, 10 per client address (the test connects from one);
    // idle connections are not closed during the test.
    let svc = Service::builder()
        .set("MAX_CONNECTIONS", "20")
        .set("MAX_CONNECTIONS_PER_CLIENT_PERCENT", "50")
        .set("KEEPALIVE_IDLE_SECS", "120")
        .start();
    let open = |t: &str| value(t, "hone_build_connections_open");
    let refused = |t: &str, cap: &str| {
        value(
            t,
            &format!(r#"hone_build_connections_refused_total{{cap="{cap}"}}"#),
        )
    };
    let t = scrape(&svc);
    assert_eq!(value(&t, "hone_build_connections_limit"), Some(20.0), "{t}");
    assert_eq!(refused(&t, "total"), Some(0.0), "{t}");
    assert_eq!(refused(&t, "per_client"), Some(0.0), "{t}");
    // Three idle connections plus the scrape's own.
    let mut held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(svc.addr()).unwrap())
        .collect();
    let mut last = String::new();
    assert!(
        wait_until(Duration::from_secs(5), || {
            last = scrape(&svc);
            open(&last) == Some(4.0)
        }),
        "{last}"
    );
    // Ten more: at most seven fit in this address's share of ten (a
    // scrape's connection may not be closed yet).
    held.extend((0..10).map(|_| TcpStream::connect(svc.addr()).unwrap()));
    let answered = refused_answers(&mut held);
    assert!((3..=5).contains(&answered), "{answered} refused");
    drop(held);
    assert!(
        wait_until(Duration::from_secs(5), || {
            last = scrape(&svc);
            open(&last) == Some(1.0)
        }),
        "the closed connections still counted:\n{last}"
    );
    assert_eq!(
        refused(&last, "per_client"),
        Some(answered as f64),
        "{last}"
    );
    assert_eq!(refused(&last, "total"), Some(0.0), "{last}");
}

/// With the whole cap for one address, the connections past it are counted
/// as refused by the total cap.
#[test]
fn connections_past_the_total_cap_are_counted_as_such() {
    let svc = Service::builder()
        .set("MAX_CONNECTIONS", "4")
        .set("MAX_CONNECTIONS_PER_CLIENT_PERCENT", "100")
        .set("KEEPALIVE_IDLE_SECS", "120")
        .start();
    let mut held: Vec<TcpStream> = (0..6)
        .map(|_| TcpStream::connect(svc.addr()).unwrap())
        .collect();
    let answered = refused_answers(&mut held);
    // Four fit (one may still be taken by the start's health check).
    assert!((2..=3).contains(&answered), "{answered} refused");
    drop(held);
    let mut last = String::new();
    assert!(
        wait_until(Duration::from_secs(5), || {
            last = scrape(&svc);
            value(&last, "hone_build_connections_open") == Some(1.0)
        }),
        "{last}"
    );
    let refused = |cap: &str| {
        value(
            &last,
            &format!(r#"hone_build_connections_refused_total{{cap="{cap}"}}"#),
        )
    };
    assert_eq!(refused("total"), Some(answered as f64), "{last}");
    assert_eq!(refused("per_client"), Some(0.0), "{last}");
}
