//! The fuzz targets' properties (`fuzz/checks.rs`) on every committed corpus input and every
//! input that once failed (`fuzz/regressions/TARGET/`): what `scripts/fuzz.sh` found runs in CI
//! as ordinary tests, without a nightly toolchain.

use std::path::{Path, PathBuf};

mod checks {
    include!("../../fuzz/checks.rs");
}

fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        files.extend(entries.map(|e| e.unwrap().path()));
    }
    files.sort();
    files
}

fn replay(target: &str, check: fn(&[u8])) {
    let files = inputs(target);
    // The seeds are committed; finding none means the corpus went missing, not that all passed.
    assert!(
        files.iter().any(|f| f
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("seed-")),
        "no seed inputs for {target} in fuzz/corpus/{target}"
    );
    for file in &files {
        let data = std::fs::read(file).unwrap();
        if let Err(panic) = std::panic::catch_unwind(|| check(&data)) {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{target} fails on {}: {message}", file.display());
        }
    }
}

#[test]
fn pop3_session_inputs() {
    replay("pop3_session", checks::pop3_session);
}

#[test]
fn pop3_listings_inputs() {
    replay("pop3_listings", checks::pop3_listings);
}

#[test]
fn repo_files_inputs() {
    replay("repo_files", checks::repo_files);
}

#[test]
fn config_inputs() {
    replay("config", checks::config);
}

#[test]
fn restore_roundtrip_inputs() {
    replay("restore_roundtrip", checks::restore_roundtrip);
}

#[test]
fn mbox_import_inputs() {
    replay("mbox_import", checks::mbox_import);
}

#[test]
fn sealed_objects_inputs() {
    replay("sealed_objects", checks::sealed_objects);
}
