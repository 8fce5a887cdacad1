//! `keys/`: an encrypted repository's key files, one per password, each the repository's
//! master key wrapped for that password (see `crypto`). A key file is named by the SHA-256 of
//! its bytes and never changes: changing a password adds a file and removes the old one.

use zeroize::Zeroizing;

use super::backend::FileKind;
use super::crypto::{CryptoError, KeyFile, MasterKey};
use super::error::RepoError;
use super::id::to_hex;
use super::layout::Layout;

/// The repository password, fetched only when the repository turns out to be encrypted (a
/// `repository_password_command` is not run for a plain repository), and at most once.
pub struct RepoPassword {
    fetch: Option<PasswordFetch>,
    fetched: std::sync::OnceLock<FetchedPassword>,
}

/// The password, none (`None`: none is configured), or why it could not be fetched.
type FetchedPassword = Result<Option<Zeroizing<Vec<u8>>>, String>;
type PasswordFetch = Box<dyn Fn() -> FetchedPassword + Send + Sync>;

impl RepoPassword {
    /// No password: an encrypted repository cannot be opened ([`RepoError::PasswordNeeded`]).
    pub fn none() -> RepoPassword {
        RepoPassword {
            fetch: None,
            fetched: std::sync::OnceLock::new(),
        }
    }

    /// The password `fetch` gives when it is first needed (`None`: none is configured); its
    /// error says what went wrong (it must not hold the password).
    pub fn from_fn(fetch: impl Fn() -> FetchedPassword + Send + Sync + 'static) -> RepoPassword {
        RepoPassword {
            fetch: Some(Box::new(fetch)),
            fetched: std::sync::OnceLock::new(),
        }
    }

    /// A password known already (tests, and `key add`'s new password).
    pub fn given(password: &str) -> RepoPassword {
        let password = Zeroizing::new(password.as_bytes().to_vec());
        RepoPassword::from_fn(move || Ok(Some(password.clone())))
    }

    /// The password (`None`: none is configured), or why it could not be fetched.
    pub(crate) fn get(&self) -> Result<Option<&[u8]>, String> {
        let Some(fetch) = self.fetch.as_ref() else {
            return Ok(None);
        };
        match self.fetched.get_or_init(fetch) {
            Ok(password) => Ok(password.as_ref().map(|p| p.as_slice())),
            Err(e) => Err(e.clone()),
        }
    }
}

impl std::fmt::Debug for RepoPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RepoPassword(<hidden>)")
    }
}

/// One key file as `key list` shows it.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    /// Its name in `keys/`: the SHA-256 of the file, in hex.
    pub id: String,
    pub file: KeyFile,
}

/// A new key file for `master`, opened by `password` (its key derived at `kdf`'s cost),
/// saying when, where and by whom it was made.
pub(crate) fn wrap(
    master: &MasterKey,
    password: &[u8],
    kdf: super::crypto::KdfParams,
) -> Result<KeyFile, RepoError> {
    Ok(KeyFile::wrap(
        master,
        password,
        kdf,
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        super::lock::host_name(),
        std::env::var("USER").unwrap_or_default(),
    )?)
}

/// Publishes `file` under `keys/` and returns its id.
pub(crate) fn add(layout: &Layout, file: &KeyFile) -> Result<String, RepoError> {
    let bytes = file.to_bytes();
    let id = to_hex(&super::id::MessageHash::of(&bytes).0);
    layout.write(FileKind::Key, &id, &bytes)?;
    Ok(id)
}

/// Every key file, sorted by id. One that cannot be parsed is an error naming it: a key file
/// is small and never rewritten, so a broken one is damage, not a race.
pub(crate) fn list(layout: &Layout) -> Result<Vec<KeyEntry>, RepoError> {
    let mut keys = Vec::new();
    for id in layout.names(FileKind::Key, |n| Some(n.to_string()))? {
        let bytes = layout.read(FileKind::Key, &id)?;
        let path = layout.key(&id);
        if to_hex(&super::id::MessageHash::of(&bytes).0) != id {
            return Err(RepoError::corrupt(
                &path,
                "its content does not match its name (the SHA-256 of the file)",
            ));
        }
        let file = KeyFile::parse(&path.display().to_string(), &bytes)
            .map_err(|e| RepoError::corrupt(&path, e.to_string()))?;
        keys.push(KeyEntry { id, file });
    }
    Ok(keys)
}

/// The master key `password` opens, and the id of the key file that opened it. Every key file
/// is tried; none opening is [`CryptoError::WrongPassword`], which says so.
pub(crate) fn open(layout: &Layout, password: &[u8]) -> Result<(String, MasterKey), RepoError> {
    let keys = list(layout)?;
    if keys.is_empty() {
        return Err(RepoError::corrupt(
            layout.key(""),
            "an encrypted repository without key files cannot be opened",
        ));
    }
    for entry in keys {
        match entry.file.unwrap(password) {
            Ok(master) => return Ok((entry.id, master)),
            Err(CryptoError::WrongPassword) => continue,
            Err(e) => return Err(RepoError::corrupt(layout.key(&entry.id), e.to_string())),
        }
    }
    Err(RepoError::Crypto(CryptoError::WrongPassword))
}

/// Removes the key file `id` (a unique prefix of it will do). Removing the last one would
/// lock everyone out of the repository for good, so it is refused.
pub(crate) fn remove(layout: &Layout, id: &str) -> Result<String, RepoError> {
    let keys = list(layout)?;
    let matching: Vec<&KeyEntry> = keys.iter().filter(|k| k.id.starts_with(id)).collect();
    let entry = match matching.as_slice() {
        [one] => *one,
        [] => {
            return Err(RepoError::NotFound {
                what: "key",
                id: id.to_string(),
            });
        }
        _ => {
            return Err(RepoError::Invalid(format!(
                "{id:?} names {} keys; give more of the id",
                matching.len()
            )));
        }
    };
    if keys.len() == 1 {
        return Err(RepoError::Invalid(format!(
            "key {} is the repository's last key: without it nobody could open the \
             repository again; add another key first",
            entry.id
        )));
    }
    layout.remove(FileKind::Key, &entry.id)?;
    Ok(entry.id.clone())
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests damage files in place, on purpose
mod tests {
    use super::*;
    use crate::repo::crypto::testing::key_file as wrap;

    #[test]
    fn keys_are_added_opened_by_any_password_and_the_last_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        for sub in [crate::repo::layout::KEYS, crate::repo::layout::TMP] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let layout = Layout::new(dir.path());
        let master = MasterKey::generate().unwrap();
        let probe = crate::repo::MessageHash([7; 32]);
        let first = add(&layout, &wrap(&master, "one")).unwrap();
        let second = add(&layout, &wrap(&master, "two")).unwrap();
        assert_eq!(list(&layout).unwrap().len(), 2);
        for password in ["one", "two"] {
            let (_, opened) = open(&layout, password.as_bytes()).unwrap();
            assert_eq!(opened.name_of(&probe), master.name_of(&probe));
        }
        let err = open(&layout, b"three").unwrap_err();
        assert_eq!(err.kind(), crate::failure::FailureKind::Auth);
        assert!(err.to_string().contains("does not open any key"), "{err}");

        assert_eq!(remove(&layout, &first[..8]).unwrap(), first);
        assert!(open(&layout, b"one").is_err());
        let err = remove(&layout, &second).unwrap_err();
        assert!(err.to_string().contains("last key"), "{err}");
        assert_eq!(list(&layout).unwrap().len(), 1);
        assert!(open(&layout, b"two").is_ok());
    }

    #[test]
    fn a_changed_key_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        for sub in [crate::repo::layout::KEYS, crate::repo::layout::TMP] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let layout = Layout::new(dir.path());
        let master = MasterKey::generate().unwrap();
        let id = add(&layout, &wrap(&master, "pw")).unwrap();
        let path = layout.key(&id);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() - 10;
        bytes[at] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = open(&layout, b"pw").unwrap_err();
        assert!(err.to_string().contains(&id), "{err}");
        assert_eq!(err.kind(), crate::failure::FailureKind::Data);
    }
}
