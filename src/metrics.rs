//! `GET /metrics` (Prometheus text format, docs/operations.md#metrics)
//! through the `prometheus` crate: the service's counters and histograms,
//! the standard `process_*` series, and what is read at scrape time (jobs
//! by state from the store, connections from the HTTP layer). Owned by
//! [`crate::app::App`] with a registry of its own; the crate's global
//! default registry is never used.

use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::sync::{Arc, RwLock};
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

/// Outcomes of a submission to the hub (`record_submission`).
pub const SUBMISSION_OUTCOMES: [&str; 3] = ["accepted", "retry", "failed"];

/// Causes of a resubmission (`record_resubmission`).
pub const RESUBMISSION_CAUSES: [&str; 5] = [
    "no_artifact",
    "job_not_found",
    "download_failed",
    "wrong_sha256",
    "internal",
];

/// What the HTTP layer knows about its connections, read at each scrape.
/// (Implemented in `http::server` over the server's own counts, so that
/// this module does not know the server.)
pub trait ConnectionStats: Send + Sync {
    /// Connections being served now.
    fn open(&self) -> u64;
    /// The most connections served at once (past it, new ones are refused).
    fn limit(&self) -> u64;
    /// Connections refused since the start because `limit` were open.
    fn refused_total_cap(&self) -> u64;
    /// Connections refused since the start because their client address
    /// held its share.
    fn refused_per_client_cap(&self) -> u64;
}

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    pub uploads: IntCounter,
    pub artifacts_stored: IntCounter,
    pub artifact_bytes: IntCounter,
    hub_submissions: IntCounterVec,
    pub rejected_overload: IntCounter,
    /// Hub jobs this process started following.
    pub followed: IntCounter,
    /// WebSocket reconnections while following.
    pub follow_reconnects: IntCounter,
    /// Programs fetched from the hub and stored.
    pub artifacts_fetched: IntCounter,
    /// Bytes downloaded from the hub (base64 text, as sent).
    pub artifact_fetched_bytes: IntCounter,
    resubmissions: IntCounterVec,
    /// Bytes of build log text stored.
    pub log_bytes_stored: IntCounter,
    build_durations: HistogramVec,
    hub_queue_times: HistogramVec,
    connections: RwLock<Option<Arc<dyn ConnectionStats>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Registers `c` and returns it. The names are fixed and distinct, so a
/// failure is a programming error (caught by every test).
fn registered<C: Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    registry
        .register(Box::new(c.clone()))
        .expect("metric names are distinct and valid");
    c
}

/// A histogram with one label.
fn histogram_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    buckets: &[f64],
    label: &str,
) -> HistogramVec {
    registered(
        registry,
        HistogramVec::new(
            HistogramOpts::new(name, help).buckets(buckets.to_vec()),
            &[label],
        )
        .expect("valid histogram"),
    )
}

/// A platform name as a label: a known one, else `other` (rows of the old
/// server may hold anything).
fn platform_label(platform: &str) -> &'static str {
    crate::platform::Platform::from_hub_name(platform).map_or("other", |p| p.hub_name())
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    registered(
        registry,
        IntCounter::new(name, help).expect("valid counter name"),
    )
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    registered(
        registry,
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter name"),
    )
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("process collector registers once");
        let m = Metrics {
            requests: counter_vec(
                &r,
                "hone_build_requests_total",
                "HTTP requests by route and status.",
                &["route", "status"],
            ),
            duration: histogram_vec(
                &r,
                "hone_build_request_duration_seconds",
                "HTTP request duration by route.",
                &BUCKETS,
                "route",
            ),
            uploads: counter(&r, "hone_build_uploads_total", "Uploads recorded."),
            artifacts_stored: counter(&r, "hone_build_artifacts_stored_total", "Artifacts stored."),
            artifact_bytes: counter(
                &r,
                "hone_build_artifact_bytes_total",
                "Bytes of artifacts stored.",
            ),
            hub_submissions: counter_vec(
                &r,
                "hone_build_hub_submissions_total",
                "Perry Hub submissions by outcome.",
                &["outcome"],
            ),
            rejected_overload: counter(
                &r,
                "hone_build_overload_rejections_total",
                "Requests answered 503 because the pool was full.",
            ),
            followed: counter(
                &r,
                "hone_build_jobs_followed_total",
                "Hub jobs this process started following over the WebSocket.",
            ),
            follow_reconnects: counter(
                &r,
                "hone_build_follow_reconnects_total",
                "WebSocket reconnections while following hub jobs.",
            ),
            artifacts_fetched: counter(
                &r,
                "hone_build_artifacts_fetched_total",
                "Programs downloaded from the hub and stored.",
            ),
            artifact_fetched_bytes: counter(
                &r,
                "hone_build_artifact_download_bytes_total",
                "Bytes downloaded from the hub (base64 text).",
            ),
            resubmissions: counter_vec(
                &r,
                "hone_build_resubmissions_total",
                "Jobs submitted again after the hub gave no program, by cause.",
                &["cause"],
            ),
            log_bytes_stored: counter(
                &r,
                "hone_build_log_bytes_stored_total",
                "Bytes of build log text stored.",
            ),
            build_durations: histogram_vec(
                &r,
                "hone_build_build_duration_seconds",
                "Builds from the hub's acceptance to the program stored, by platform.",
                &BUILD_BUCKETS,
                "platform",
            ),
            hub_queue_times: histogram_vec(
                &r,
                "hone_build_hub_queue_seconds",
                "Time builds waited in Perry Hub's queue (accepted to first stage), by platform.",
                &QUEUE_BUCKETS,
                "platform",
            ),
            connections: RwLock::new(None),
            registry: r,
        };
        // Series with a known, small set of label values start at zero, so
        // that rate() and absence-based alerts see them from the start.
        for outcome in SUBMISSION_OUTCOMES {
            m.hub_submissions.with_label_values(&[outcome]);
        }
        for cause in RESUBMISSION_CAUSES {
            m.resubmissions.with_label_values(&[cause]);
        }
        m
    }

    /// `route`: the route's name (`http::router::Route::name`, or one of the
    /// server's fixed names), never a path: the label's values stay few.
    pub fn record_request(&self, route: &'static str, status: u16, took: Duration) {
        self.requests
            .with_label_values(&[route, &status.to_string()])
            .inc();
        self.duration
            .with_label_values(&[route])
            .observe(took.as_secs_f64());
    }

    /// `outcome`: one of [`SUBMISSION_OUTCOMES`].
    pub fn record_submission(&self, outcome: &'static str) {
        self.hub_submissions.with_label_values(&[outcome]).inc();
    }

    /// `cause`: one of [`RESUBMISSION_CAUSES`].
    pub fn record_resubmission(&self, cause: &'static str) {
        self.resubmissions.with_label_values(&[cause]).inc();
    }

    /// A build of `platform` completed `secs` after the hub accepted it.
    pub fn record_build_duration(&self, platform: &str, secs: f64) {
        self.build_durations
            .with_label_values(&[platform_label(platform)])
            .observe(secs.max(0.0));
    }

    /// A build of `platform` left the hub's queue (its first stage) `secs`
    /// after the hub accepted it.
    pub fn record_hub_queue_time(&self, platform: &str, secs: f64) {
        self.hub_queue_times
            .with_label_values(&[platform_label(platform)])
            .observe(secs.max(0.0));
    }

    /// The HTTP layer's connection counts, read at each scrape from now on
    /// (replacing any earlier source).
    pub fn watch_connections(&self, stats: Arc<dyn ConnectionStats>) {
        *self.connections.write().unwrap_or_else(|p| p.into_inner()) = Some(stats);
    }

    /// Renders everything; `jobs` is the store's count per state (None when
    /// the store did not answer).
    pub fn render(&self, jobs: Option<&[(String, i64)]>) -> String {
        let mut families = self.registry.gather();
        families.extend(self.read_now(jobs));
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut out = Vec::new();
        // Encoding fails only on an inconsistent family (a bug): answer
        // what was written rather than nothing.
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            log::error!("encoding metrics: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    /// The series read at scrape time, built afresh each time (a state that
    /// has no job any more disappears, as before).
    fn read_now(&self, jobs: Option<&[(String, i64)]>) -> Vec<MetricFamily> {
        let mut out = Vec::new();
        let gauge = |name: &str, help: &str, v: u64| {
            let g = IntGauge::new(name, help).expect("valid gauge");
            g.set(i64::try_from(v).unwrap_or(i64::MAX));
            g.collect()
        };
        out.extend(gauge(
            "hone_build_store_up",
            "1 when the database answered the count of jobs, 0 when it did not.",
            u64::from(jobs.is_some()),
        ));
        if let Some(jobs) = jobs {
            let by_state = IntGaugeVec::new(
                Opts::new("hone_build_jobs", "Build jobs by state."),
                &["state"],
            )
            .expect("valid gauge");
            for (state, n) in jobs {
                by_state.with_label_values(&[state.as_str()]).set(*n);
            }
            out.extend(by_state.collect());
        }
        let stats = self
            .connections
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let (open, limit, refused_total, refused_client) = match &stats {
            Some(s) => (
                s.open(),
                s.limit(),
                s.refused_total_cap(),
                s.refused_per_client_cap(),
            ),
            None => (0, 0, 0, 0),
        };
        out.extend(gauge(
            "hone_build_connections_open",
            "Client connections being served now.",
            open,
        ));
        out.extend(gauge(
            "hone_build_connections_limit",
            "The most client connections served at once (MAX_CONNECTIONS, lowered to what the open-file limit allows).",
            limit,
        ));
        let refused = IntCounterVec::new(
            Opts::new(
                "hone_build_connections_refused_total",
                "Client connections answered 503 and closed at once because a cap was reached, by cap.",
            ),
            &["cap"],
        )
        .expect("valid counter");
        refused.with_label_values(&["total"]).inc_by(refused_total);
        refused
            .with_label_values(&["per_client"])
            .inc_by(refused_client);
        out.extend(refused.collect());
        // In label order, as the registry's own families are.
        for family in &mut out {
            family.mut_metric().sort_by(|a, b| {
                let values = |m: &prometheus::proto::Metric| {
                    m.get_label()
                        .iter()
                        .map(|l| l.value().to_string())
                        .collect::<Vec<_>>()
                };
                values(a).cmp(&values(b))
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl ConnectionStats for Fixed {
        fn open(&self) -> u64 {
            3
        }
        fn limit(&self) -> u64 {
            100
        }
        fn refused_total_cap(&self) -> u64 {
            7
        }
        fn refused_per_client_cap(&self) -> u64 {
            2
        }
    }

    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn two_instances_do_not_share_series() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.uploads.inc();
        a.record_request("health", 200, Duration::from_millis(3));
        assert_eq!(
            sample(&a.render(None), "hone_build_uploads_total"),
            Some(1.0)
        );
        assert_eq!(
            sample(&b.render(None), "hone_build_uploads_total"),
            Some(0.0)
        );
        let text = b.render(None);
        assert!(!text.contains("hone_build_requests_total{"), "{text}");
    }

    #[test]
    fn route_label_on_the_histogram_and_scrape_time_series() {
        let m = Metrics::new();
        m.record_request("status", 200, Duration::from_millis(3));
        m.record_request("status", 404, Duration::from_millis(40));
        m.record_request("health", 200, Duration::from_secs(60));
        m.watch_connections(Arc::new(Fixed));
        let jobs = [("pending".to_string(), 2), ("completed".to_string(), 5)];
        let t = m.render(Some(&jobs));
        let s = |series: &str| sample(&t, series).unwrap_or_else(|| panic!("{series}:\n{t}"));
        assert_eq!(
            s(r#"hone_build_request_duration_seconds_bucket{route="status",le="0.005"}"#),
            1.0
        );
        assert_eq!(
            s(r#"hone_build_request_duration_seconds_bucket{route="status",le="0.05"}"#),
            2.0
        );
        assert_eq!(
            s(r#"hone_build_request_duration_seconds_bucket{route="health",le="30"}"#),
            0.0
        );
        assert_eq!(
            s(r#"hone_build_request_duration_seconds_bucket{route="health",le="+Inf"}"#),
            1.0
        );
        assert_eq!(
            s(r#"hone_build_request_duration_seconds_count{route="status"}"#),
            2.0
        );
        assert_eq!(
            s(r#"hone_build_requests_total{route="status",status="404"}"#),
            1.0
        );
        assert_eq!(s(r#"hone_build_jobs{state="completed"}"#), 5.0);
        let completed = t.find(r#"hone_build_jobs{state="completed"}"#).unwrap();
        assert!(completed < t.find(r#"hone_build_jobs{state="pending"}"#).unwrap());
        assert_eq!(s("hone_build_store_up"), 1.0);
        assert_eq!(s("hone_build_connections_open"), 3.0);
        assert_eq!(s("hone_build_connections_limit"), 100.0);
        assert_eq!(
            s(r#"hone_build_connections_refused_total{cap="total"}"#),
            7.0
        );
        assert_eq!(
            s(r#"hone_build_connections_refused_total{cap="per_client"}"#),
            2.0
        );
        for cause in RESUBMISSION_CAUSES {
            assert_eq!(
                s(&format!(
                    r#"hone_build_resubmissions_total{{cause="{cause}"}}"#
                )),
                0.0
            );
        }
        assert!(t.contains("# TYPE hone_build_connections_refused_total counter"));
        // The store did not answer: no job series, store_up 0.
        let t = m.render(None);
        assert_eq!(sample(&t, "hone_build_store_up"), Some(0.0), "{t}");
        assert!(!t.contains("hone_build_jobs{"), "{t}");
    }

    #[test]
    fn build_histograms_by_platform() {
        let m = Metrics::default();
        m.record_build_duration("linux", 45.0);
        m.record_build_duration("linux", 700.0);
        m.record_build_duration("amiga", 5.0);
        m.record_hub_queue_time("macos", 2.5);
        m.log_bytes_stored.inc_by(42);
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

    #[cfg(target_os = "linux")]
    #[test]
    fn process_series_are_there() {
        let t = Metrics::new().render(None);
        for name in [
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_cpu_seconds_total",
            "process_start_time_seconds",
            "process_threads",
        ] {
            let v = sample(&t, name).unwrap_or_else(|| panic!("{name}:\n{t}"));
            assert!(name == "process_cpu_seconds_total" || v > 0.0, "{name} {v}");
        }
    }
}
