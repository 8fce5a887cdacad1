//! Where an account's run finds the repository writer: a plain `Mutex<RepoWriter>` (tests,
//! tools), or one still being opened while the accounts connect ([`Opening`]).

use std::sync::{Mutex, OnceLock};

use crate::repo::{Layout, OpeningWriter, RepoError, RepoWriter};

/// Where an account's run finds the repository writer.
pub trait WriterSource: Sync {
    /// The repository's layout, known before the writer is ready.
    fn layout(&self) -> Layout;
    /// The writer; waits while it is being opened.
    fn writer(&self) -> Result<&Mutex<RepoWriter>, RepoError>;
}

impl WriterSource for Mutex<RepoWriter> {
    fn layout(&self) -> Layout {
        lock(self).repo().layout().clone()
    }

    fn writer(&self) -> Result<&Mutex<RepoWriter>, RepoError> {
        Ok(self)
    }
}

/// A writer still being opened when the accounts start connecting: the index loads while
/// TLS, login and the listing go on, and is waited for when the first account needs it.
pub(super) struct Opening {
    layout: Layout,
    opening: Mutex<Option<OpeningWriter>>,
    ready: OnceLock<Mutex<RepoWriter>>,
    /// Why opening failed, for the accounts that ask after the first.
    failed: OnceLock<RepoError>,
}

impl Opening {
    pub(super) fn new(writer: OpeningWriter) -> Opening {
        Opening {
            layout: writer.layout().clone(),
            opening: Mutex::new(Some(writer)),
            ready: OnceLock::new(),
            failed: OnceLock::new(),
        }
    }

    pub(super) fn into_writer(self) -> Result<RepoWriter, RepoError> {
        let failure = self.failure();
        if let Some(writer) = self.ready.into_inner() {
            return Ok(writer.into_inner().unwrap_or_else(|e| e.into_inner()));
        }
        match self.opening.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(opening) => opening.wait(),
            None => Err(failure),
        }
    }

    /// Why opening failed, again.
    fn failure(&self) -> RepoError {
        self.failed.get().map_or_else(
            || RepoError::Invalid("the repository could not be opened".into()),
            RepoError::duplicate,
        )
    }
}

impl WriterSource for Opening {
    fn layout(&self) -> Layout {
        self.layout.clone()
    }

    fn writer(&self) -> Result<&Mutex<RepoWriter>, RepoError> {
        // Held while waiting, so that one account waits and the others wait for it.
        let mut opening = lock(&self.opening);
        if let Some(writer) = self.ready.get() {
            return Ok(writer);
        }
        match opening.take().map(OpeningWriter::wait) {
            Some(Ok(writer)) => Ok(self.ready.get_or_init(|| Mutex::new(writer))),
            Some(Err(e)) => {
                let again = e.duplicate();
                let _ = self.failed.set(e);
                Err(again)
            }
            None => Err(self.failure()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every account is told why the repository could not be opened, with the same exit
    /// code, and so is the caller that closes the run.
    #[test]
    fn a_failed_open_is_reported_alike_to_every_account() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r");
        crate::repo::Repository::init(&path).unwrap();
        // A file where the index directory belongs: opening fails in the background.
        crate::repo::break_index_for_tests(&path);
        let opening = RepoWriter::open_in_background(
            &path,
            "test",
            &crate::repo::RepoPassword::none(),
            |_| {},
        )
        .unwrap();
        let shared = Opening::new(opening);
        let first = shared.writer().err().map(|e| (e.to_string(), e.kind()));
        let second = shared.writer().err().map(|e| (e.to_string(), e.kind()));
        assert!(first.is_some());
        assert_eq!(first, second);
        let last = shared
            .into_writer()
            .err()
            .map(|e| (e.to_string(), e.kind()));
        assert_eq!(last, first);
    }
}
