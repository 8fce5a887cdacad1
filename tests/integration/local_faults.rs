//! Bad local input (issue 9): a repository that cannot be read or written, a full disk during a
//! pack write, a newer format, a corrupt or misplaced lock file. Each gives one clear message
//! and the right exit code, and leaves nothing half-written.
//!
//! Some cases need root (mounting a small or read-only tmpfs, dropping privileges); CI runs as
//! root, so there they fail rather than skip.

use popbackup::cli::exit::for_kind;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use popbackup::repo::{MessageHash, RepoLock, Repository};
use popbackup::snapshot::Outcome;

use crate::hostile::{assert_verifies_clean, contents, listing, login, retr_reply, run};
use crate::support::fake_server::expect;

fn popbackup(repo: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_popbackup"))
        .arg("--repo")
        .arg(repo)
        .arg("--config")
        .arg(repo.with_file_name("no-config.toml"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn is_root() -> bool {
    // The owner of a file this process just created.
    use std::os::unix::fs::MetadataExt as _;
    let probe = tempfile::NamedTempFile::new().unwrap();
    probe.as_file().metadata().unwrap().uid() == 0
}

/// Root is needed for this case: under CI it must be there; elsewhere the case is skipped.
fn needs_root(case: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{case} needs root, and CI runs as root"
    );
    eprintln!("SKIPPED: {case} needs root");
    false
}

/// A tmpfs mounted for the test's lifetime.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .unwrap();
        assert!(ok.success(), "mount tmpfs at {}", at.display());
        Tmpfs(at.to_path_buf())
    }

    fn read_only(&self) {
        let ok = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Messages that do not compress, so the disk fills as their size says.
fn incompressible(tag: u64, len: usize) -> Vec<u8> {
    let mut m = format!("Subject: {tag}\r\n\r\n").into_bytes();
    let mut x = tag.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while m.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Base64-like text: what attachments look like on the wire.
        for b in x.to_le_bytes() {
            m.push(
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
                    [(b & 63) as usize],
            );
        }
        if m.len() % 78 == 76 {
            m.extend_from_slice(b"\r\n");
        }
    }
    m.extend_from_slice(b"\r\n");
    m
}

#[test]
fn a_full_disk_during_a_pack_write_fails_cleanly_and_the_next_run_resumes() {
    if !needs_root("the disk-full case") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mount = Tmpfs::mount(&dir.path().join("small"), "450k");
    let path = mount.0.join("repo");
    let writer = Mutex::new(Repository::init(&path).unwrap().lock("test").unwrap());
    let msgs: Vec<Vec<u8>> = (1..=3).map(|i| incompressible(i, 250_000)).collect();
    let sizes: Vec<usize> = msgs.iter().map(Vec::len).collect();
    let mut script = login();
    script.extend(listing(&["d1", "d2", "d3"], &sizes));
    script.extend([expect("RETR 1"), expect("RETR 2"), expect("RETR 3")]);
    script.extend(msgs.iter().map(|m| retr_reply(m)));
    let (report, server) = run(&writer, script);
    server.finish();
    assert_eq!(report.outcome, Outcome::Failed, "{report:?}");
    assert_eq!(report.failure.map(for_kind), Some(74), "{report:?}");
    let message = report.message.clone().unwrap();
    assert!(message.contains("No space left"), "{message}");
    assert!(
        message.contains("free space on that file system"),
        "{message}"
    );
    assert!(report.snapshot.is_none());
    drop(writer);

    // Nothing half-written: what is there verifies clean, and what was kept reads back.
    let repo = Repository::open(&path).unwrap();
    assert!(repo.snapshots().unwrap().is_empty());
    let tmp: Vec<_> = std::fs::read_dir(path.join("tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "temporary files left: {tmp:?}");
    assert_verifies_clean(&repo);
    let kept: Vec<&Vec<u8>> = msgs
        .iter()
        .filter(|m| repo.location(&MessageHash::of(m)).is_some())
        .collect();
    for m in &kept {
        assert_eq!(&&repo.read_message(&MessageHash::of(m)).unwrap(), m);
    }
    assert!(kept.len() < 3, "the disk was not full after all");
    drop(repo);

    // Space freed: the next run fetches only what was not kept, and commits.
    let ok = Command::new("mount")
        .args(["-o", "remount,size=4m"])
        .arg(&mount.0)
        .status()
        .unwrap();
    assert!(ok.success());
    let writer = Mutex::new(Repository::open(&path).unwrap().lock("test").unwrap());
    let missing: Vec<usize> = (0..3).filter(|i| !kept.contains(&&msgs[*i])).collect();
    let mut script = login();
    script.extend(listing(&["d1", "d2", "d3"], &sizes));
    script.extend(missing.iter().map(|i| expect(&format!("RETR {}", i + 1))));
    script.extend(missing.iter().map(|i| retr_reply(&msgs[*i])));
    script.extend([expect("QUIT"), crate::support::fake_server::send("+OK")]);
    let (report, server) = run(&writer, script);
    server.finish_ok();
    assert_eq!(report.outcome, Outcome::Ok, "{report:?}");
    assert_eq!(
        (report.downloaded, report.already_archived),
        (missing.len(), 3 - missing.len())
    );
}

#[test]
fn a_repository_of_another_user_is_a_permission_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    Repository::init(&path).unwrap();
    let before = contents(&path);
    // As root, run popbackup as `nobody`; otherwise make the repository unreadable.
    let run_as_other = |args: &[&str]| -> Output {
        if is_root() {
            Command::new("setpriv")
                .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(env!("CARGO_BIN_EXE_popbackup"))
                .arg("--repo")
                .arg(&path)
                .arg("--config")
                .arg("/nonexistent/config.toml")
                .args(args)
                .output()
                .unwrap()
        } else {
            popbackup(&path, args)
        }
    };
    use std::os::unix::fs::PermissionsExt as _;
    if !is_root() {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
    }
    // The temporary directory itself must be reachable by `nobody`.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for args in [
        &["snapshots"][..],
        &["verify"],
        &["forget", "--keep-last", "1"],
    ] {
        let out = run_as_other(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(77), "{args:?}: {err}");
        assert!(err.contains("Permission denied"), "{args:?}: {err}");
        assert!(
            err.contains("as the user who owns the repository"),
            "{args:?}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "one clear message: {err}");
    }
    if !is_root() {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    assert_eq!(contents(&path), before);
}

#[test]
fn a_read_only_repository_verifies_and_refuses_writes_clearly() {
    if !needs_root("the read-only case") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mount = Tmpfs::mount(&dir.path().join("ro"), "4m");
    let path = mount.0.join("repo");
    Repository::init(&path).unwrap();
    mount.read_only();
    let out = popbackup(&path, &["verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("not recorded") && text.contains("read-only"),
        "{text}"
    );
    let out = popbackup(&path, &["forget", "--keep-last", "1"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(74), "{err}");
    assert!(err.contains("the file system is read-only"), "{err}");
}

#[test]
fn a_newer_format_is_refused_by_every_command_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    Repository::init(&path).unwrap();
    let config = path.join("config.json");
    use popbackup::repo::format::{FORMAT_VERSION, PLAIN_FORMAT_VERSION};
    let v = |n: u32| format!("\"version\": {n}");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(&v(PLAIN_FORMAT_VERSION), &v(FORMAT_VERSION + 1));
    std::fs::write(&config, &text).unwrap();
    let before = contents(&path);
    for args in [
        &["snapshots"][..],
        &["verify"],
        &["restore", "--dry-run", "--to", "maildir:/nonexistent/x"],
        &["forget", "--keep-last", "1"],
        &["prune"],
    ] {
        let out = popbackup(&path, args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(65), "{args:?}: {err}");
        assert!(
            err.contains(&format!("repository format {}", FORMAT_VERSION + 1))
                && err.contains("use a newer popbackup"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(
        contents(&path),
        before,
        "a newer repository must not be touched"
    );
}

#[test]
fn a_corrupt_lock_file_is_harmless_and_a_misplaced_one_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    Repository::init(&path).unwrap();
    let lock = path.join("lock");

    // Garbage left in the lock file by a dead holder: the next writer takes over.
    std::fs::write(&lock, b"\x00\xff{not json at all\n\x1b[31m").unwrap();
    let out = popbackup(&path, &["forget", "--keep-last", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let after = std::fs::read(&lock).unwrap();
    assert!(
        !after.contains(&0xff),
        "the garbage was replaced: {after:?}"
    );

    // Garbage in a lock that is held: the writer is refused, and told so plainly.
    let held = RepoLock::acquire(&lock, "test").unwrap();
    std::fs::write(&lock, b"\x00\xffgarbage").unwrap();
    let out = popbackup(&path, &["forget", "--keep-last", "1"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(75), "{err}");
    assert!(
        err.contains("unreadable lock file") && err.contains("try again later"),
        "{err}"
    );
    assert!(!err.contains('\u{1b}') && !err.contains('\0'), "{err:?}");
    drop(held);

    // A directory where the lock file should be.
    std::fs::remove_file(&lock).unwrap();
    std::fs::create_dir(&lock).unwrap();
    let out = popbackup(&path, &["forget", "--keep-last", "1"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(74), "{err}");
    assert!(
        err.contains("lock file") && err.contains(&lock.display().to_string()),
        "{err}"
    );
}
