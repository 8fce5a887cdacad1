//! Reading Maildirs: the message files of `cur/` and `new/` with the flags of their names,
//! and the folders below a Maildir.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{ImportError, Origin, Run, mtime_ns};
use crate::repo::{Manifest, MessageRecord};

/// How deep below the Maildir folders are looked for.
const MAX_FOLDER_DEPTH: usize = 16;

/// One message file of a Maildir.
struct MaildirFile {
    path: PathBuf,
    /// The unique part of the name (before `:2,`).
    unique: String,
    flags: Option<String>,
    /// Size and time, or why they could not be read (a dangling link).
    meta: Result<(u64, Option<u64>), String>,
}

/// The folders of the Maildir at `root`, itself first (`None`) when it has `cur/` or `new/`,
/// then each folder below it by its dotted name: `.Sent` is `Sent`, `.Lists.rust` is
/// `Lists.rust`, a Maildir in `Archive/2019` is `Archive.2019`. Links are not followed.
pub(super) fn folders(root: &Path) -> Result<Vec<(Option<String>, PathBuf)>, ImportError> {
    if let Err(e) = std::fs::read_dir(root) {
        if e.kind() == std::io::ErrorKind::NotFound {
            return Err(ImportError::Missing {
                path: root.to_path_buf(),
            });
        }
        return Err(ImportError::NotAMaildir {
            path: root.to_path_buf(),
            detail: format!("cannot read it: {e}"),
        });
    }
    let mut out = Vec::new();
    if is_maildir(root) {
        out.push((None, root.to_path_buf()));
    }
    let mut below = Vec::new();
    let walk = walkdir::WalkDir::new(root)
        .min_depth(1)
        .max_depth(MAX_FOLDER_DEPTH)
        .into_iter()
        .filter_entry(|e| {
            e.file_type().is_dir() && !matches!(e.file_name().to_str(), Some("cur" | "new" | "tmp"))
        });
    for entry in walk.flatten() {
        if !is_maildir(entry.path()) {
            continue;
        }
        let relative = entry.path().strip_prefix(root).unwrap_or(entry.path());
        let name: Vec<String> = relative
            .components()
            .map(|c| {
                let part = c.as_os_str().to_string_lossy();
                part.strip_prefix('.').unwrap_or(&part).to_string()
            })
            .collect();
        below.push((Some(name.join(".")), entry.path().to_path_buf()));
    }
    below.sort();
    out.extend(below);
    if out.is_empty() {
        return Err(ImportError::NotAMaildir {
            path: root.to_path_buf(),
            detail: "neither exists".into(),
        });
    }
    Ok(out)
}

fn is_maildir(dir: &Path) -> bool {
    ["cur", "new"].iter().any(|sub| dir.join(sub).is_dir())
}

/// Imports the message files of one Maildir folder (its folders are imports of their own).
pub(super) fn import(
    run: &mut Run<'_>,
    root: &Path,
    latest: Option<Manifest>,
) -> Result<(), ImportError> {
    let files = scan(root)?;
    // The last import's records, by file name, to skip what did not change.
    let mut known: HashMap<String, MessageRecord> = latest
        .into_iter()
        .flat_map(|m| m.messages)
        .filter_map(|r| Some((r.uidl.clone()?, r)))
        .collect();
    for file in files {
        let (size, mtime) = match file.meta {
            Ok(meta) => meta,
            Err(why) => {
                run.unreadable(file.path.display().to_string(), why);
                continue;
            }
        };
        let unchanged = known.get(&file.unique).is_some_and(|r| {
            r.list_size == size && r.mtime_ns.is_some() && r.mtime_ns == mtime && run.holds(r)
        });
        if unchanged && let Some(old) = known.remove(&file.unique) {
            run.reuse(old, file.flags);
            continue;
        }
        match std::fs::read(&file.path) {
            Ok(bytes) => run.take(
                &bytes,
                Origin {
                    uidl: Some(file.unique),
                    list_size: size,
                    flags: file.flags,
                    mtime_ns: mtime,
                    ..Origin::default()
                },
            )?,
            Err(e) => run.unreadable(file.path.display().to_string(), e.to_string()),
        }
    }
    Ok(())
}

/// The message files of a Maildir, `cur/` then `new/`, each sorted by name.
fn scan(root: &Path) -> Result<Vec<MaildirFile>, ImportError> {
    let mut out = Vec::new();
    let mut found_any = false;
    for sub in ["cur", "new"] {
        let dir = root.join(sub);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(ImportError::NotAMaildir {
                    path: root.to_path_buf(),
                    detail: format!("cannot read {}: {e}", dir.display()),
                });
            }
        };
        found_any = true;
        let mut files: Vec<MaildirFile> = entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    return None;
                }
                // Followed, so that a link whose file is gone is named, not passed over.
                let meta = match std::fs::metadata(entry.path()) {
                    Ok(meta) if meta.is_file() => Ok((meta.len(), mtime_ns(&meta))),
                    Ok(_) => return None,
                    Err(e) => Err(e.to_string()),
                };
                let (unique, flags) = match name.split_once(":2,") {
                    Some((unique, flags)) => (unique.to_string(), Some(flags.to_string())),
                    None => (name.clone(), None),
                };
                Some(MaildirFile {
                    path: entry.path(),
                    unique,
                    flags,
                    meta,
                })
            })
            .collect();
        files.sort_by(|a, b| a.unique.cmp(&b.unique));
        out.extend(files);
    }
    if !found_any {
        return Err(ImportError::NotAMaildir {
            path: root.to_path_buf(),
            detail: "neither exists".into(),
        });
    }
    Ok(out)
}
