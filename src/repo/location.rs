//! Where a repository is: a local directory, or a bucket (and prefix) on an S3-compatible
//! object store. This is what `--repo` and `repository` name; [`RepoLocation::backend`]
//! turns it into the [`Backend`] that reaches the files.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use zeroize::Zeroizing;

use super::backend::{Backend, LocalBackend};
use super::error::RepoError;

/// Where a repository is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoLocation {
    /// A directory on a local (or mounted) file system.
    Local(PathBuf),
    /// A bucket on an S3-compatible object store.
    S3(S3Location),
}

/// `s3://BUCKET/optional/prefix`, with how to reach and sign in to the store.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// Object names start with `PREFIX/` (empty: at the bucket's top level).
    pub prefix: String,
    /// `None`: AWS S3 itself, at the region's endpoint.
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: S3Secret,
}

/// The secret half of an S3 key: never shown, and wiped from memory when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Secret(Zeroizing<String>);

impl S3Secret {
    pub fn new(value: impl Into<String>) -> S3Secret {
        S3Secret(Zeroizing::new(value.into()))
    }

    /// The secret itself; only for signing requests.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for S3Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("S3Secret(<hidden>)")
    }
}

/// The region AWS's own tools assume when none is given.
pub const DEFAULT_REGION: &str = "us-east-1";

impl fmt::Debug for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Location")
            .field("url", &self.url())
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// What `s3://...` names, before the store's settings are added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    pub prefix: String,
}

impl S3Url {
    /// Parses `s3://BUCKET[/PREFIX]`; `None` when `text` is not an `s3://` URL at all.
    pub fn parse(text: &str) -> Option<Result<S3Url, String>> {
        let rest = text.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_matches('/');
        // S3's bucket naming rules, loosely: what would never be a bucket is refused here
        // rather than as a puzzling error from the store.
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !valid_bucket {
            return Some(Err(format!(
                "`{text}`: `{bucket}` is not a bucket name (3 to 63 characters: lower-case \
                 letters, digits, `-` and `.`); write s3://BUCKET/optional/prefix"
            )));
        }
        if prefix.split('/').any(|part| part == "." || part == "..")
            || prefix.contains("//")
            || prefix.contains('\\')
        {
            return Some(Err(format!(
                "`{text}`: the prefix must be plain names separated by single `/`"
            )));
        }
        Some(Ok(S3Url {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        }))
    }
}

impl fmt::Display for S3Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

impl S3Location {
    pub fn url(&self) -> S3Url {
        S3Url {
            bucket: self.bucket.clone(),
            prefix: self.prefix.clone(),
        }
    }

    /// The endpoint requests go to, for messages.
    pub fn endpoint_label(&self) -> String {
        match &self.endpoint {
            Some(e) => e.clone(),
            None => format!("https://s3.{}.amazonaws.com", self.region),
        }
    }
}

impl RepoLocation {
    /// The backend that reaches this repository's files.
    pub(crate) fn backend(&self) -> Result<Arc<dyn Backend>, RepoError> {
        match self {
            RepoLocation::Local(root) => Ok(Arc::new(LocalBackend::new(root.clone()))),
            RepoLocation::S3(s3) => Ok(Arc::new(super::s3::S3Backend::connect(s3)?)),
        }
    }

    /// The local directory, for a repository on disk.
    pub fn local_path(&self) -> Option<&Path> {
        match self {
            RepoLocation::Local(path) => Some(path),
            RepoLocation::S3(_) => None,
        }
    }
}

impl fmt::Display for RepoLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RepoLocation::Local(path) => write!(f, "{}", path.display()),
            RepoLocation::S3(s3) => write!(f, "{}", s3.url()),
        }
    }
}

impl From<&Path> for RepoLocation {
    fn from(path: &Path) -> RepoLocation {
        RepoLocation::Local(path.to_path_buf())
    }
}

impl From<&PathBuf> for RepoLocation {
    fn from(path: &PathBuf) -> RepoLocation {
        RepoLocation::Local(path.clone())
    }
}

impl From<PathBuf> for RepoLocation {
    fn from(path: PathBuf) -> RepoLocation {
        RepoLocation::Local(path)
    }
}

impl From<&RepoLocation> for RepoLocation {
    fn from(location: &RepoLocation) -> RepoLocation {
        location.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_name_a_bucket_and_a_prefix() {
        let url = S3Url::parse("s3://mail-backup/alice/laptop/")
            .unwrap()
            .unwrap();
        assert_eq!(url.bucket, "mail-backup");
        assert_eq!(url.prefix, "alice/laptop");
        assert_eq!(url.to_string(), "s3://mail-backup/alice/laptop");
        let top = S3Url::parse("s3://mail-backup").unwrap().unwrap();
        assert_eq!(top.prefix, "");
        assert_eq!(top.to_string(), "s3://mail-backup");
        assert!(S3Url::parse("/var/backups/mail").is_none());
        for bad in [
            "s3://",
            "s3://UPPER",
            "s3://ab",
            "s3://b_x/p",
            "s3://bucket/a/../b",
        ] {
            let err = S3Url::parse(bad).unwrap().unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn the_secret_key_is_never_shown() {
        let location = S3Location {
            bucket: "b".repeat(3),
            prefix: String::new(),
            endpoint: None,
            region: DEFAULT_REGION.into(),
            access_key_id: "GKabc".into(),
            secret_access_key: S3Secret::new("very-secret-value"),
        };
        let shown = format!("{location:?} {}", RepoLocation::S3(location.clone()));
        assert!(!shown.contains("very-secret-value"), "{shown}");
        assert!(shown.contains("GKabc"), "{shown}");
        assert_eq!(
            location.endpoint_label(),
            "https://s3.us-east-1.amazonaws.com"
        );
    }
}
