//! The application context every handler and background thread shares:
//! configuration, store, metrics. Built once in `main`, passed as `Arc<App>`.

use crate::config::Config;
use crate::error::StoreError;
use crate::hub::HubClient;
use crate::metrics::Metrics;
use crate::packages::Replacement;
use crate::store::Store;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Asks the store whether a change is recorded.
pub type RecordedCheck = Box<dyn Fn(&dyn Store) -> Result<bool, StoreError> + Send>;

/// Files put in place for a change whose COMMIT outcome is unknown (the
/// database connection broke while committing). Kept until the store can
/// say whether the change is recorded: then kept for good, or undone.
pub struct Unresolved {
    /// For the log: what the change was.
    pub what: String,
    /// Is the change recorded?
    pub recorded: RecordedCheck,
    /// What was put in place, in order.
    pub placed: Vec<Replacement>,
}

pub struct App {
    pub cfg: Config,
    pub store: Box<dyn Store>,
    pub hub: HubClient,
    pub metrics: Metrics,
    migrated: AtomicBool,
    unresolved: Mutex<Vec<Unresolved>>,
}

impl App {
    pub fn new(cfg: Config, store: Box<dyn Store>) -> App {
        let hub = HubClient::new(
            &cfg.perry_hub_url,
            cfg.perry_hub_license_key.clone(),
            std::time::Duration::from_secs(cfg.hub_timeout_secs),
        );
        App {
            cfg,
            store,
            hub,
            metrics: Metrics::default(),
            migrated: AtomicBool::new(false),
            unresolved: Mutex::new(Vec::new()),
        }
    }

    pub fn is_migrated(&self) -> bool {
        self.migrated.load(Ordering::Acquire)
    }

    /// Settles a change whose COMMIT outcome is unknown: asks the store at
    /// once (a few tries), and if it cannot tell yet, leaves it to
    /// [`App::resolve_unresolved`], which the dispatcher calls every tick.
    pub fn settle(&self, u: Unresolved) {
        match ask_until(|| (u.recorded)(self.store.as_ref())) {
            Some(recorded) => finish(u, recorded),
            None => {
                log::warn!("{}: outcome unknown until the database answers", u.what);
                self.unresolved
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(u);
            }
        }
    }

    /// Retries the changes [`App::settle`] could not settle.
    pub fn resolve_unresolved(&self) {
        let mut list = self.unresolved.lock().unwrap_or_else(|p| p.into_inner());
        let pending = std::mem::take(&mut *list);
        for u in pending {
            match (u.recorded)(self.store.as_ref()) {
                Ok(recorded) => finish(u, recorded),
                Err(_) => list.push(u),
            }
        }
    }

    /// Runs the migrations unless done; true when the schema is in place.
    /// Start-up calls it, and so do `/health` and the dispatcher while the
    /// database was unreachable at start-up.
    pub fn try_migrate(&self) -> bool {
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
                log::warn!("migration not done yet: {e}");
                false
            }
        }
    }
}

fn finish(u: Unresolved, recorded: bool) {
    if recorded {
        log::info!("{}: recorded after all; files kept", u.what);
        u.placed.into_iter().for_each(Replacement::keep);
    } else {
        log::info!("{}: not recorded; files put back", u.what);
        u.placed.into_iter().rev().for_each(Replacement::undo);
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

/// Asks the store a yes/no question a few times over about a second
/// (after a connection was lost): `None` when it never answered.
pub fn ask_until(
    mut question: impl FnMut() -> Result<bool, crate::error::StoreError>,
) -> Option<bool> {
    for attempt in 0..3 {
        if attempt > 0 {
            std::thread::sleep(std::time::Duration::from_millis(400));
        }
        match question() {
            Ok(answer) => return Some(answer),
            Err(e) => log::debug!("store not answering yet: {e}"),
        }
    }
    None
}
