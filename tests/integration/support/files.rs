//! Where `docs/FORMAT.md` puts a repository's files. Tests that damage a repository by hand
//! (a flipped byte, a deleted pack) find the files from the documented format, as a user
//! with standard tools would; the library hands out no paths.

use std::path::{Path, PathBuf};

use popbackup::repo::{PackId, SnapshotId};

pub fn packs_dir(repo: &Path) -> PathBuf {
    repo.join("packs")
}

pub fn pack(repo: &Path, id: &PackId) -> PathBuf {
    packs_dir(repo).join(format!("{id}.tar"))
}

pub fn snapshot(repo: &Path, id: &SnapshotId) -> PathBuf {
    repo.join("snapshots").join(format!("{id}.json.zst"))
}

pub fn index_dir(repo: &Path) -> PathBuf {
    repo.join("index")
}

pub fn index_file(repo: &Path, name: &str) -> PathBuf {
    index_dir(repo).join(format!("{name}.json.zst"))
}
