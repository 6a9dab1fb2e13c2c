//! Counters for `GET /metrics` (Prometheus text format, docs/operations.md#metrics). Owned by
//! [`crate::app::App`]; no global state.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds (seconds) of the request duration histogram.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Upper bounds (seconds) of the build duration histogram (accepted by the
/// hub → completed).
const BUILD_BUCKETS: [f64; 10] = [
    10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0,
];
/// Upper bounds (seconds) of the hub queue time histogram (accepted → the
/// hub's first stage).
const QUEUE_BUCKETS: [f64; 10] = [
    1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// One histogram series (10 buckets).
#[derive(Default, Clone, Copy)]
struct Series {
    buckets: [u64; 10],
    count: u64,
    sum: f64,
}

impl Series {
    fn observe(&mut self, bounds: &[f64; 10], secs: f64) {
        for (i, b) in bounds.iter().enumerate() {
            if secs <= *b {
                self.buckets[i] += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }
}

/// A histogram by platform (the hub's platform name).
type ByPlatform = Mutex<BTreeMap<&'static str, Series>>;

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    duration_buckets: [AtomicU64; BUCKETS.len()],
    duration_count: AtomicU64,
    duration_sum_micros: AtomicU64,
    pub uploads: AtomicU64,
    pub artifacts_stored: AtomicU64,
    pub artifact_bytes: AtomicU64,
    hub_submissions: Mutex<BTreeMap<&'static str, u64>>,
    pub rejected_overload: AtomicU64,
    /// Hub jobs this process started following.
    pub followed: AtomicU64,
    /// WebSocket reconnections while following.
    pub follow_reconnects: AtomicU64,
    /// Programs fetched from the hub and stored.
    pub artifacts_fetched: AtomicU64,
    /// Bytes downloaded from the hub (base64 text, as sent).
    pub artifact_fetched_bytes: AtomicU64,
    resubmissions: Mutex<BTreeMap<&'static str, u64>>,
    /// Bytes of build log text stored.
    pub log_bytes_stored: AtomicU64,
    build_durations: ByPlatform,
    hub_queue_times: ByPlatform,
}

/// A platform name as a label: a known one, else `other` (rows of the old
/// server may hold anything).
fn platform_label(platform: &str) -> &'static str {
    crate::platform::Platform::from_hub_name(platform).map_or("other", |p| p.hub_name())
}

impl Metrics {
    pub fn record_request(&self, route: &'static str, status: u16, took: Duration) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((route, status))
            .or_default() += 1;
        let secs = took.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.duration_buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.duration_count.fetch_add(1, Relaxed);
        self.duration_sum_micros
            .fetch_add(took.as_micros() as u64, Relaxed);
    }

    /// `outcome`: accepted, retry, failed.
    pub fn record_submission(&self, outcome: &'static str) {
        *self
            .hub_submissions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(outcome)
            .or_default() += 1;
    }

    /// `cause`: no_artifact, job_not_found, download_failed, wrong_sha256, internal.
    pub fn record_resubmission(&self, cause: &'static str) {
        *self
            .resubmissions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(cause)
            .or_default() += 1;
    }

    /// A build of `platform` completed `secs` after the hub accepted it.
    pub fn record_build_duration(&self, platform: &str, secs: f64) {
        self.build_durations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(platform_label(platform))
            .or_default()
            .observe(&BUILD_BUCKETS, secs.max(0.0));
    }

    /// A build of `platform` left the hub's queue (its first stage) `secs`
    /// after the hub accepted it.
    pub fn record_hub_queue_time(&self, platform: &str, secs: f64) {
        self.hub_queue_times
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(platform_label(platform))
            .or_default()
            .observe(&QUEUE_BUCKETS, secs.max(0.0));
    }

    /// Renders everything; `jobs` is the store's count per state (None when
    /// the store did not answer).
    pub fn render(&self, jobs: Option<&[(String, i64)]>) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# HELP hone_build_requests_total HTTP requests by route and status."
        );
        let _ = writeln!(s, "# TYPE hone_build_requests_total counter");
        for ((route, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                s,
                "hone_build_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        let _ = writeln!(
            s,
            "# HELP hone_build_request_duration_seconds HTTP request duration."
        );
        let _ = writeln!(s, "# TYPE hone_build_request_duration_seconds histogram");
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                s,
                "hone_build_request_duration_seconds_bucket{{le=\"{b}\"}} {}",
                self.duration_buckets[i].load(Relaxed)
            );
        }
        let count = self.duration_count.load(Relaxed);
        let _ = writeln!(
            s,
            "hone_build_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            s,
            "hone_build_request_duration_seconds_sum {}",
            self.duration_sum_micros.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(s, "hone_build_request_duration_seconds_count {count}");
        for (name, help, v) in [
            (
                "hone_build_uploads_total",
                "Uploads recorded.",
                &self.uploads,
            ),
            (
                "hone_build_artifacts_stored_total",
                "Artifacts stored.",
                &self.artifacts_stored,
            ),
            (
                "hone_build_artifact_bytes_total",
                "Bytes of artifacts stored.",
                &self.artifact_bytes,
            ),
            (
                "hone_build_overload_rejections_total",
                "Requests answered 503 because the pool was full.",
                &self.rejected_overload,
            ),
            (
                "hone_build_jobs_followed_total",
                "Hub jobs this process started following over the WebSocket.",
                &self.followed,
            ),
            (
                "hone_build_follow_reconnects_total",
                "WebSocket reconnections while following hub jobs.",
                &self.follow_reconnects,
            ),
            (
                "hone_build_artifacts_fetched_total",
                "Programs downloaded from the hub and stored.",
                &self.artifacts_fetched,
            ),
            (
                "hone_build_artifact_download_bytes_total",
                "Bytes downloaded from the hub (base64 text).",
                &self.artifact_fetched_bytes,
            ),
            (
                "hone_build_log_bytes_stored_total",
                "Bytes of build log text stored.",
                &self.log_bytes_stored,
            ),
        ] {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Relaxed)
            );
        }
        let _ = writeln!(
            s,
            "# HELP hone_build_hub_submissions_total Perry Hub submissions by outcome."
        );
        let _ = writeln!(s, "# TYPE hone_build_hub_submissions_total counter");
        for (outcome, n) in self
            .hub_submissions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                s,
                "hone_build_hub_submissions_total{{outcome=\"{outcome}\"}} {n}"
            );
        }
        let _ = writeln!(
            s,
            "# HELP hone_build_resubmissions_total Jobs submitted again after the hub gave no program, by cause."
        );
        let _ = writeln!(s, "# TYPE hone_build_resubmissions_total counter");
        for (cause, n) in self
            .resubmissions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(s, "hone_build_resubmissions_total{{cause=\"{cause}\"}} {n}");
        }
        for (name, help, bounds, h) in [
            (
                "hone_build_build_duration_seconds",
                "Builds from the hub's acceptance to the program stored, by platform.",
                &BUILD_BUCKETS,
                &self.build_durations,
            ),
            (
                "hone_build_hub_queue_seconds",
                "Time builds waited in Perry Hub's queue (accepted to first stage), by platform.",
                &QUEUE_BUCKETS,
                &self.hub_queue_times,
            ),
        ] {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} histogram");
            for (platform, series) in h.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                for (i, b) in bounds.iter().enumerate() {
                    let _ = writeln!(
                        s,
                        "{name}_bucket{{platform=\"{platform}\",le=\"{b}\"}} {}",
                        series.buckets[i]
                    );
                }
                let _ = writeln!(
                    s,
                    "{name}_bucket{{platform=\"{platform}\",le=\"+Inf\"}} {}\n\
                     {name}_sum{{platform=\"{platform}\"}} {}\n\
                     {name}_count{{platform=\"{platform}\"}} {}",
                    series.count, series.sum, series.count
                );
            }
        }
        let _ = writeln!(s, "# HELP hone_build_jobs Build jobs by state.");
        let _ = writeln!(s, "# TYPE hone_build_jobs gauge");
        match jobs {
            Some(jobs) => {
                for (state, n) in jobs {
                    let state: String = state
                        .chars()
                        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    let _ = writeln!(s, "hone_build_jobs{{state=\"{state}\"}} {n}");
                }
                let _ = writeln!(s, "hone_build_store_up 1");
            }
            None => {
                let _ = writeln!(s, "hone_build_store_up 0");
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_histograms_by_platform() {
        let m = Metrics::default();
        m.record_build_duration("linux", 45.0);
        m.record_build_duration("linux", 700.0);
        m.record_build_duration("amiga", 5.0);
        m.record_hub_queue_time("macos", 2.5);
        m.log_bytes_stored.fetch_add(42, Relaxed);
        let out = m.render(None);
        for want in [
            "# TYPE hone_build_build_duration_seconds histogram",
            "hone_build_build_duration_seconds_bucket{platform=\"linux\",le=\"30\"} 0",
            "hone_build_build_duration_seconds_bucket{platform=\"linux\",le=\"60\"} 1",
            "hone_build_build_duration_seconds_bucket{platform=\"linux\",le=\"1200\"} 2",
            "hone_build_build_duration_seconds_bucket{platform=\"linux\",le=\"+Inf\"} 2",
            "hone_build_build_duration_seconds_sum{platform=\"linux\"} 745",
            "hone_build_build_duration_seconds_count{platform=\"linux\"} 2",
            "hone_build_build_duration_seconds_count{platform=\"other\"} 1",
            "hone_build_hub_queue_seconds_bucket{platform=\"macos\",le=\"1\"} 0",
            "hone_build_hub_queue_seconds_bucket{platform=\"macos\",le=\"5\"} 1",
            "hone_build_hub_queue_seconds_count{platform=\"macos\"} 1",
            "# TYPE hone_build_log_bytes_stored_total counter\nhone_build_log_bytes_stored_total 42",
        ] {
            assert!(out.contains(want), "missing {want:?} in\n{out}");
        }
    }
}
