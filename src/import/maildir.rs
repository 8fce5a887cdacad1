//! Reading Maildirs: the message files of `cur/` and `new/` with the flags of their names,
//! and the folders below a Maildir.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use super::{ImportError, Origin, Output, Run, mtime_ns};
use crate::repo::Manifest;

/// How deep below the Maildir folders are looked for.
const MAX_FOLDER_DEPTH: usize = 16;

/// One message file of a Maildir, kept small: a folder of 100,000 files holds one each.
struct MaildirFile {
    /// Its name in `cur/` or `new/` (any bytes: shown, and matched, as UTF-8 with
    /// replacements).
    name: Box<std::ffi::OsStr>,
    in_new: bool,
    /// Size and time, or why they could not be read (a dangling link).
    meta: Result<(u64, Option<u64>), Box<str>>,
}

impl MaildirFile {
    /// The unique part of the name (before `:2,`).
    fn unique(&self) -> Cow<'_, str> {
        match self.name.to_string_lossy() {
            Cow::Borrowed(name) => Cow::Borrowed(name.split_once(":2,").map_or(name, |(u, _)| u)),
            Cow::Owned(name) => Cow::Owned(
                name.split_once(":2,")
                    .map_or(name.as_str(), |(u, _)| u)
                    .to_string(),
            ),
        }
    }

    fn flags(&self) -> Option<String> {
        let name = self.name.to_string_lossy();
        name.split_once(":2,").map(|(_, f)| f.to_string())
    }

    fn path(&self, root: &Path) -> PathBuf {
        root.join(if self.in_new { "new" } else { "cur" })
            .join(&*self.name)
    }
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
    // The files by unique name (positions into `files`, sorted), for one pass over the last
    // import's records: a file with the size and time recorded, whose message is still
    // archived, is not read again.
    let mut by_name: Vec<usize> = Vec::with_capacity(files.len());
    for (i, file) in files.iter().enumerate() {
        if let Err(why) = &file.meta {
            run.unreadable(file.path(root).display().to_string(), why.to_string());
        } else {
            by_name.push(i);
        }
    }
    by_name.sort_by(|&a, &b| files[a].unique().cmp(&files[b].unique()).then(a.cmp(&b)));
    let mut reused = vec![false; files.len()];
    if let Some(latest) = &latest
        && !by_name.is_empty()
    {
        run.for_each_previous(latest, |writer, out, r| {
            let Some(uidl) = r.uidl.as_deref() else {
                return Ok(());
            };
            // The first file of that name not reused yet (a name twice, in cur/ and new/,
            // is two files).
            let from = by_name.partition_point(|&i| &*files[i].unique() < uidl);
            let Some(&i) = by_name[from..]
                .iter()
                .take_while(|&&i| files[i].unique() == uidl)
                .find(|&&i| !reused[i])
            else {
                return Ok(());
            };
            let same = files[i].meta.as_ref().is_ok_and(|&(size, mtime)| {
                size == r.list_size && mtime.is_some() && mtime == r.mtime_ns
            });
            if !same || !Output::holds(writer, &r) {
                return Ok(());
            }
            reused[i] = true;
            out.reuse(writer, r, files[i].flags())
        })?;
    }
    drop(by_name);
    // The rest, in the folder's order.
    for (file, _) in files.iter().zip(reused).filter(|(_, reused)| !reused) {
        let Ok((size, mtime)) = file.meta else {
            continue;
        };
        let path = file.path(root);
        match std::fs::read(&path) {
            Ok(bytes) => run.take(
                &bytes,
                Origin {
                    uidl: Some(file.unique().to_string()),
                    list_size: size,
                    flags: file.flags(),
                    mtime_ns: mtime,
                    ..Origin::default()
                },
            )?,
            Err(e) => run.unreadable(path.display().to_string(), e.to_string()),
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
                let name = entry.file_name();
                if name.as_encoded_bytes().starts_with(b".") {
                    return None;
                }
                // Followed, so that a link whose file is gone is named, not passed over.
                let meta = match std::fs::metadata(entry.path()) {
                    Ok(meta) if meta.is_file() => Ok((meta.len(), mtime_ns(&meta))),
                    Ok(_) => return None,
                    Err(e) => Err(e.to_string().into()),
                };
                Some(MaildirFile {
                    name: name.into_boxed_os_str(),
                    in_new: sub == "new",
                    meta,
                })
            })
            .collect();
        files.sort_by(|a, b| a.unique().cmp(&b.unique()));
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
