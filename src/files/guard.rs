//! Files put in place inside a store transaction, and what becomes of them.
//!
//! A change that writes both rows and files (an upload, a stored artifact)
//! puts its files in place last, inside the transaction, just before COMMIT
//! (the store calls back for that). [`Placed`] collects what was put in
//! place and, once the transaction's outcome is known, keeps the files
//! (committed), puts back what they replaced (failed), or — when the
//! connection broke during COMMIT itself, so nobody knows — hands them to
//! [`Unsettled`], which asks the store until it can tell and then keeps or
//! undoes them. A row never points at a missing file, and a refused or
//! failed change leaves the files as they were.

use super::{Replacement, TempFile};
use crate::error::{ApiError, StoreError};
use crate::store::Store;
use std::io;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// Asks the store whether a change is recorded.
pub type RecordedCheck = Box<dyn Fn(&dyn Store) -> Result<bool, StoreError> + Send>;

/// The files one change put in place, in order.
#[derive(Default)]
#[must_use = "call conclude() once the transaction's outcome is known"]
pub struct Placed {
    files: Vec<Replacement>,
    /// The first file error met while placing, answered as what it is (a
    /// full disk: 507) rather than as the store's failure it became.
    file_error: Option<io::Error>,
}

impl Placed {
    /// Persists `tmp` as `dest`, keeping what it replaces until the outcome is known.
    pub fn place(&mut self, tmp: &mut TempFile, dest: &Path) -> io::Result<()> {
        let r = self.noting(Replacement::place(tmp, dest))?;
        self.files.push(r);
        Ok(())
    }

    /// Adds a replacement made elsewhere (the manifest): `made`, whose
    /// error is remembered like [`Placed::place`]'s.
    pub fn push(&mut self, made: io::Result<Replacement>) -> io::Result<()> {
        let r = self.noting(made)?;
        self.files.push(r);
        Ok(())
    }

    /// Remembers the first file error of `r` and passes `r` on.
    fn noting<T>(&mut self, r: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &r
            && self.file_error.is_none()
        {
            self.file_error = Some(io::Error::new(e.kind(), e.to_string()));
        }
        r
    }

    /// Settles the files by the transaction's `outcome`: kept on success,
    /// undone on failure; on [`StoreError::CommitUnknown`] handed to
    /// `unsettled` with `recorded`, the question that tells whether the
    /// change is in the database. Returns `outcome` as the client's answer:
    /// a failure caused by placing a file is answered as that file error
    /// (see [`super::store_or_file_error`]).
    pub fn conclude<T>(
        mut self,
        outcome: Result<T, StoreError>,
        unsettled: &Unsettled,
        store: &dyn Store,
        what: impl FnOnce() -> String,
        recorded: impl FnOnce() -> RecordedCheck,
    ) -> Result<T, ApiError> {
        let file_error = self.file_error.take();
        match &outcome {
            Ok(_) => self.keep(),
            Err(StoreError::CommitUnknown(_)) => {
                unsettled.settle(store, what(), recorded(), self.files)
            }
            Err(_) => self.undo(),
        }
        outcome.map_err(|e| super::store_or_file_error(e, file_error))
    }

    fn keep(self) {
        self.files.into_iter().for_each(Replacement::keep);
    }

    fn undo(self) {
        self.files.into_iter().rev().for_each(Replacement::undo);
    }
}

/// A change whose COMMIT outcome is not known yet.
struct Entry {
    /// For the log: what the change was.
    what: String,
    recorded: RecordedCheck,
    files: Vec<Replacement>,
}

impl Entry {
    fn finish(self, recorded: bool) {
        let placed = Placed {
            files: self.files,
            file_error: None,
        };
        if recorded {
            log::info!("{}: recorded after all; files kept", self.what);
            placed.keep();
        } else {
            log::info!("{}: not recorded; files put back", self.what);
            placed.undo();
        }
    }
}

/// Changes whose COMMIT outcome is unknown, with their files, until the
/// store can tell. One per process, in `App`.
#[derive(Default)]
pub struct Unsettled {
    list: Mutex<Vec<Entry>>,
}

impl Unsettled {
    /// Asks the store at once (a few tries over about a second); if it
    /// cannot tell yet, keeps the change for [`Unsettled::retry`].
    fn settle(
        &self,
        store: &dyn Store,
        what: String,
        recorded: RecordedCheck,
        files: Vec<Replacement>,
    ) {
        let entry = Entry {
            what,
            recorded,
            files,
        };
        match ask_until(|| (entry.recorded)(store)) {
            Some(recorded) => entry.finish(recorded),
            None => {
                log::warn!("{}: outcome unknown until the database answers", entry.what);
                self.lock().push(entry);
            }
        }
    }

    /// Asks again about every change not settled yet (the background loop
    /// calls this on every tick).
    pub fn retry(&self, store: &dyn Store) {
        let mut list = self.lock();
        for entry in std::mem::take(&mut *list) {
            match (entry.recorded)(store) {
                Ok(recorded) => entry.finish(recorded),
                Err(_) => list.push(entry),
            }
        }
    }

    /// How many changes wait to be settled.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.list.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Asks the store a yes/no question a few times over about a second
/// (after a connection was lost): `None` when it never answered.
fn ask_until(mut question: impl FnMut() -> Result<bool, StoreError>) -> Option<bool> {
    for attempt in 0..3 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(400));
        }
        match question() {
            Ok(answer) => return Some(answer),
            Err(e) => log::debug!("store not answering yet: {e}"),
        }
    }
    None
}
