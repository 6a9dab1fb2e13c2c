//! The application context every handler and background thread shares:
//! configuration, store, hub client, metrics, and the changes whose COMMIT
//! outcome is still unknown. Built once in `main`, passed as `Arc<App>`.

use crate::cache::CompletedVersions;
use crate::config::Config;
use crate::files::Unsettled;
use crate::hub::HubClient;
use crate::metrics::Metrics;
use crate::store::Store;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

pub struct App {
    pub cfg: Config,
    pub store: Box<dyn Store>,
    pub hub: HubClient,
    pub metrics: Metrics,
    /// Files of changes whose COMMIT outcome is unknown (see `files::guard`).
    pub unsettled: Unsettled,
    /// This process among those sharing the database (random, per start):
    /// the owner of its follow leases.
    pub instance: String,
    /// `GET /status` answers of versions that can no longer change.
    pub completed: CompletedVersions,
    /// Wakes the follow supervisor when the hub accepted a job (it
    /// replays nothing: subscribe at once, not at the next tick).
    pub follow_wake: crate::follow::Wake,
    migrated: AtomicBool,
    /// The `Arc` this context lives in, for work that outlives a request
    /// (a first submission still running when the upload answers).
    me: Weak<App>,
}

impl App {
    /// The shared context (it knows its own `Arc`: [`App::shared`]).
    pub fn new(cfg: Config, store: Box<dyn Store>) -> Arc<App> {
        let hub = HubClient::new(
            &cfg.perry_hub_url,
            crate::hub::Credentials {
                license_key: cfg.perry_hub_license_key.clone(),
                token: cfg.perry_hub_token.clone(),
            },
            std::time::Duration::from_secs(cfg.hub_timeout_secs),
        );
        Arc::new_cyclic(|me| App {
            cfg,
            store,
            hub,
            metrics: Metrics::default(),
            unsettled: Unsettled::default(),
            instance: crate::codec::random_hex(8).expect("the OS random number generator works"),
            completed: CompletedVersions::default(),
            follow_wake: crate::follow::Wake::default(),
            migrated: AtomicBool::new(false),
            me: me.clone(),
        })
    }

    /// This context as an `Arc`, for a thread that may outlive the caller.
    pub fn shared(&self) -> Option<Arc<App>> {
        self.me.upgrade()
    }

    pub fn is_migrated(&self) -> bool {
        self.migrated.load(Ordering::Acquire)
    }

    /// Runs the migrations unless done; true when the schema is in place.
    /// Start-up calls it, and so do `/health` and the background loop while
    /// the database was unreachable at start-up.
    pub fn try_migrate(&self) -> bool {
        self.try_migrate_then(None)
    }

    /// [`App::try_migrate`] for a caller that tries again after `retry_in`
    /// (the background loop), which the warning then says.
    pub fn try_migrate_then(&self, retry_in: Option<std::time::Duration>) -> bool {
        if self.is_migrated() {
            return true;
        }
        match self.store.migrate() {
            Ok(()) => {
                self.migrated.store(true, Ordering::Release);
                log::info!("{} store ready (schema migrated)", self.store.kind());
                true
            }
            Err(e) => {
                let then = match retry_in {
                    Some(d) => format!("; retrying in {} s", d.as_secs()),
                    None => String::new(),
                };
                log::warn!(
                    "migration not done yet: {} does not answer: {e}{then}",
                    self.store_location()
                );
                false
            }
        }
    }

    /// Which database this is, in the operator's terms (the keys that name it).
    pub fn store_location(&self) -> String {
        let c = &self.cfg;
        if c.embedded_store() {
            format!("the embedded store in DATA_DIR={}", c.data_dir.display())
        } else {
            format!(
                "the MySQL database {} at DB_HOST={} DB_PORT={}",
                c.db_name, c.db_host, c.db_port
            )
        }
    }
}

/// Unix seconds now.
pub fn now_secs() -> i64 {
    now_millis() / 1000
}

/// Unix milliseconds now.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The delay before try `attempt + 1` (`attempt` ≥ 1): `base` doubling per
/// attempt up to `max`, with ±25 % jitter so that many retries failing
/// together do not come back together.
pub fn backoff(
    base: std::time::Duration,
    max: std::time::Duration,
    attempt: u32,
) -> std::time::Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let delay = base.saturating_mul(1u32 << exp).min(max);
    let mut r = [0u8; 2];
    let _ = getrandom::fill(&mut r);
    let unit = u16::from_le_bytes(r) as f64 / u16::MAX as f64; // 0..=1
    delay.mul_f64(0.75 + 0.5 * unit)
}

/// Sleeps `d` unless `stop` is set first (looked at every 50 ms); false
/// when stopped.
pub fn sleep_unless_stopped(stop: &AtomicBool, d: std::time::Duration) -> bool {
    let end = std::time::Instant::now() + d;
    while std::time::Instant::now() < end {
        if stop.load(Ordering::Acquire) {
            return false;
        }
        let left = end.saturating_duration_since(std::time::Instant::now());
        std::thread::sleep(std::time::Duration::from_millis(50).min(left));
    }
    !stop.load(Ordering::Acquire)
}
