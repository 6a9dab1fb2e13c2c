//! Answers that can no longer change, kept in memory: the `GET /status` of
//! a version whose every build completed.
//!
//! Why that stays correct, also with several processes on one database: a
//! version whose builds all completed is immutable. A new upload of it is
//! refused (`409 VERSION_EXISTS`), `retry` resets only failed jobs, and a
//! delivery to a completed job changes nothing (same bytes) or is refused
//! (other bytes). The one later change to a completed row — the hub's job id
//! recorded after the artifact arrived first — is excluded: an answer is
//! kept only when every build has its hub job id.
//!
//! Bounded: past [`CAPACITY`] versions the cache starts over (it holds only
//! what a query would give again).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Most versions kept.
pub const CAPACITY: usize = 10_000;

/// (name, version) as asked → the answer's body.
type Answers = HashMap<(String, String), Arc<[u8]>>;

/// `GET /status` bodies of completed versions, by (name, version) as asked.
#[derive(Default)]
pub struct CompletedVersions {
    map: Mutex<Answers>,
}

impl CompletedVersions {
    pub fn get(&self, name: &str, version: &str) -> Option<Arc<[u8]>> {
        self.lock()
            .get(&(name.to_string(), version.to_string()))
            .cloned()
    }

    pub fn put(&self, name: &str, version: &str, body: &[u8]) {
        let mut map = self.lock();
        if map.len() >= CAPACITY {
            map.clear();
        }
        map.insert((name.to_string(), version.to_string()), Arc::from(body));
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Answers> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_answers_and_stays_bounded() {
        let c = CompletedVersions::default();
        assert!(c.get("a", "1").is_none());
        c.put("a", "1", b"{}");
        assert_eq!(c.get("a", "1").as_deref(), Some(&b"{}"[..]));
        assert!(c.get("a", "2").is_none());
        for i in 0..CAPACITY + 5 {
            c.put("p", &i.to_string(), b"x");
        }
        assert!(c.len() <= CAPACITY);
    }
}
