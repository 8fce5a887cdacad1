//! Where a test's repository lives: a temporary directory, or a fresh prefix in the bucket of
//! the throwaway Garage that `scripts/test.sh` starts (through `scripts/garage.sh`).
//!
//! Tests find Garage through `POPBACKUP_GARAGE_DIR` (the directory holding `garage.env`). When
//! it is missing an S3 test is skipped with a message, except under `CI=true`, where that is a
//! failure: the object-store tests must never silently pass.
//!
//! [`on_every_backend!`] turns one test body into a test per backend (`NAME::local`,
//! `NAME::s3`), so the same assertions hold on disk and in a bucket.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use popbackup::repo::{RepoLocation, S3Location, S3Secret};

/// The running test Garage.
pub struct Garage {
    vars: HashMap<String, String>,
}

impl Garage {
    /// The running single-node Garage, or `None` (skip) outside CI when there is none.
    pub fn get() -> Option<Garage> {
        Garage::from_env("POPBACKUP_GARAGE_DIR")
    }

    /// The running 3-node cluster (replication factor 3) for the fault tests.
    pub fn cluster() -> Option<Garage> {
        Garage::from_env("POPBACKUP_GARAGE3_DIR")
    }

    fn from_env(variable: &str) -> Option<Garage> {
        let dir = std::env::var(variable).ok().filter(|d| !d.is_empty());
        let text = dir
            .as_ref()
            .and_then(|d| std::fs::read_to_string(Path::new(d).join("garage.env")).ok());
        let Some(text) = text else {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "CI=true but no test Garage is running ({variable}={dir:?}); run the tests \
                     through scripts/test.sh"
                );
            }
            eprintln!("SKIPPED: no test Garage; run scripts/test.sh to include the S3 tests");
            return None;
        };
        Some(Garage {
            vars: super::env_file(&text),
        })
    }

    fn var(&self, key: &str) -> &str {
        self.vars
            .get(key)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("{key} missing in garage.env"))
    }

    /// The S3 endpoint of each node.
    pub fn endpoints(&self) -> Vec<String> {
        self.var("POPBACKUP_GARAGE_ENDPOINTS")
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }

    pub fn bucket(&self) -> &str {
        self.var("POPBACKUP_GARAGE_BUCKET")
    }

    pub fn secret_file(&self) -> PathBuf {
        PathBuf::from(self.var("POPBACKUP_GARAGE_SECRET_FILE"))
    }

    pub fn secret(&self) -> String {
        std::fs::read_to_string(self.secret_file())
            .unwrap()
            .trim()
            .to_string()
    }

    /// The key's id.
    pub fn key_id(&self) -> &str {
        self.var("POPBACKUP_GARAGE_KEY_ID")
    }

    /// The pid of node `node` (0-based), to kill it.
    pub fn node_pid(&self, node: usize) -> u32 {
        let dir = Path::new(self.var("POPBACKUP_GARAGE_DIR"));
        let pid = std::fs::read_to_string(dir.join(format!("node{}/pid", node + 1))).unwrap();
        pid.trim().parse().unwrap()
    }

    /// A prefix no other test (or earlier run) uses.
    pub fn fresh_prefix(name: &str) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        format!(
            "{name}-{}-{nanos}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// A new repository location under `prefix`, reached through the first node.
    pub fn location(&self, prefix: &str) -> RepoLocation {
        self.location_via(0, prefix)
    }

    /// The same, reached through node `node` (0-based).
    pub fn location_via(&self, node: usize, prefix: &str) -> RepoLocation {
        RepoLocation::S3(S3Location {
            bucket: self.bucket().to_string(),
            prefix: prefix.to_string(),
            endpoint: Some(self.endpoints()[node].clone()),
            region: self.var("POPBACKUP_GARAGE_REGION").to_string(),
            access_key_id: self.key_id().to_string(),
            secret_access_key: S3Secret::new(self.secret()),
        })
    }

    /// The configuration's `repository` line and `[s3]` table for `prefix`.
    pub fn config(&self, prefix: &str) -> String {
        format!(
            "repository = \"s3://{}/{prefix}\"\n[s3]\nendpoint = \"{}\"\nregion = \"{}\"\n\
             access_key_id = \"{}\"\nsecret_access_key_file = \"{}\"\n",
            self.bucket(),
            self.endpoints()[0],
            self.var("POPBACKUP_GARAGE_REGION"),
            self.key_id(),
            self.secret_file().display()
        )
    }
}

/// One test's repository and what the command line needs to reach it.
pub struct TestRepo {
    /// Holds a local repository and the configuration file of [`TestRepo::command`].
    dir: tempfile::TempDir,
    pub location: RepoLocation,
    /// The configuration's lines that name the repository (and `[s3]`).
    pub config: String,
    /// The prefix in the bucket (empty for a local repository).
    pub prefix: String,
}

impl TestRepo {
    /// A repository in a temporary directory (not created yet).
    pub fn local() -> TestRepo {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("repo");
        TestRepo {
            config: format!("repository = \"{}\"\n", path.display()),
            location: RepoLocation::Local(path),
            prefix: String::new(),
            dir,
        }
    }

    /// A repository under a fresh prefix of the test Garage's bucket, or `None` (skip).
    pub fn s3(name: &str) -> Option<TestRepo> {
        Some(TestRepo::in_bucket(&Garage::get()?, name))
    }

    /// A repository under a fresh prefix of `garage`'s bucket.
    pub fn in_bucket(garage: &Garage, name: &str) -> TestRepo {
        let prefix = Garage::fresh_prefix(name);
        TestRepo {
            dir: tempfile::tempdir().unwrap(),
            location: garage.location(&prefix),
            config: garage.config(&prefix),
            prefix,
        }
    }

    /// `popbackup ARGS` on this repository, through a configuration file naming it (and its
    /// `[s3]` table), with the configuration and cache directories in the test's own.
    pub fn command(&self, args: &[&str]) -> std::process::Command {
        use std::os::unix::fs::PermissionsExt as _;
        let config = self.dir.path().join("repo-config.toml");
        std::fs::write(&config, &self.config).unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_popbackup"));
        command
            .arg("--config")
            .arg(&config)
            .args(args)
            .env("XDG_CONFIG_HOME", self.dir.path())
            .env("XDG_CACHE_HOME", self.dir.path());
        command
    }

    /// The directory of a local repository.
    pub fn path(&self) -> Option<&Path> {
        self.location.local_path()
    }
}

/// `on_every_backend! { fn name(repo: &TestRepo) { ... } ... }`: each body runs as
/// `name::local` and `name::s3`.
macro_rules! on_every_backend {
    ($( $(#[doc = $doc:literal])* fn $name:ident($repo:ident : &TestRepo) $body:block )*) => {
        $(
            $(#[doc = $doc])*
            mod $name {
                #[allow(unused_imports)]
                use super::*;
                use crate::support::store::TestRepo;

                fn case($repo: &TestRepo) $body

                #[test]
                fn local() {
                    case(&TestRepo::local());
                }

                #[test]
                fn s3() {
                    if let Some(repo) = TestRepo::s3(stringify!($name)) {
                        case(&repo);
                    }
                }
            }
        )*
    };
}
pub(crate) use on_every_backend;
