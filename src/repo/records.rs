//! Records files: a committed snapshot's message list, cut into runs of records, each run a
//! content-addressed file (`records/<sha256 of the file>.json.zst`).
//!
//! A nightly snapshot lists the whole mailbox, and most of the list is what the last snapshot
//! listed. Written as one file, the list of a 20,000-message mailbox cost 2 MB every night
//! that brought mail. Cut where the records themselves say (a run ends after a record whose
//! line's SHA-256 starts with a zero byte), a run that holds none of the night's changes is
//! byte for byte the run the last snapshot wrote, and its file is shared: a night adds the
//! runs around what arrived or went, tens of kilobytes. Cutting at fixed counts would shift
//! every run after the first message the server deleted.

use std::io::Write as _;
use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::RepoError;
use super::compressed;
use super::id::{RecordsId, SnapshotId};
use super::layout::Layout;
use super::manifest::RecordsList;
use crate::durable;

/// The most records one file holds, so that a run of records whose hashes never end it stays
/// bounded (runs average 256 records).
pub const MAX_RECORDS_PER_FILE: usize = 4096;

/// True if a run ends after the record serialized as `line`: one record in 256 on average.
fn ends_run(line: &[u8]) -> bool {
    Sha256::digest(line)[0] == 0
}

/// Cuts a message list, one serialized record at a time, into records files, writing those
/// the repository does not hold yet. Nothing is visible under a final name before
/// [`RecordsWriter::finish`] publishes all new files together.
pub struct RecordsWriter<'a> {
    layout: &'a Layout,
    run: Option<compressed::Writer>,
    in_run: usize,
    names: Vec<RecordsId>,
    new_files: durable::Batch,
}

impl<'a> RecordsWriter<'a> {
    pub fn new(layout: &'a Layout) -> RecordsWriter<'a> {
        RecordsWriter {
            layout,
            run: None,
            in_run: 0,
            names: Vec::new(),
            new_files: durable::Batch::new(),
        }
    }

    /// Appends one record, serialized as one line of JSON.
    pub fn push(&mut self, line: &[u8]) -> Result<(), RepoError> {
        let run = match &mut self.run {
            Some(run) => {
                run.write_all(b",\n").map_err(cannot_write)?;
                run
            }
            None => {
                let mut run = compressed::Writer::new(64 << 10).map_err(cannot_write)?;
                run.write_all(b"[\n").map_err(cannot_write)?;
                self.run.insert(run)
            }
        };
        run.write_all(line).map_err(cannot_write)?;
        self.in_run += 1;
        if ends_run(line) || self.in_run >= MAX_RECORDS_PER_FILE {
            self.end_run()?;
        }
        Ok(())
    }

    fn end_run(&mut self) -> Result<(), RepoError> {
        let mut run = match self.run.take() {
            Some(run) => run,
            None => {
                let mut empty = compressed::Writer::new(64).map_err(cannot_write)?;
                empty.write_all(b"[\n").map_err(cannot_write)?;
                empty
            }
        };
        run.write_all(b"\n]").map_err(cannot_write)?;
        let bytes = run.finish().map_err(cannot_write)?;
        self.in_run = 0;
        let id = RecordsId::of(&bytes);
        let path = self.layout.records(&id);
        if !path.is_file() && !self.names.contains(&id) {
            let tmp = self.layout.tmp();
            let mut temp = durable::TempFile::new(&tmp, "records")
                .map_err(RepoError::io("cannot create a file in", &tmp))?;
            temp.file()
                .write_all(&bytes)
                .map_err(RepoError::io("cannot write", temp.path()))?;
            self.new_files.add(temp, path);
        }
        self.names.push(id);
        Ok(())
    }

    /// Publishes the new files (one file-system sync for all) and names the list. An empty
    /// list is one file holding `[]`, so a committed snapshot always names a file.
    pub fn finish(mut self) -> Result<RecordsList, RepoError> {
        if self.run.is_some() || self.names.is_empty() {
            self.end_run()?;
        }
        let dir = self.layout.dir(super::layout::RECORDS);
        self.new_files
            .commit()
            .map_err(RepoError::io("cannot write records files in", &dir))?;
        Ok(RecordsList(self.names))
    }
}

fn cannot_write(e: std::io::Error) -> RepoError {
    RepoError::Invalid(format!("cannot write records: {e}"))
}

/// The records of snapshot `snapshot`, whose list `list` names, read in order.
pub fn read_list<T: serde::de::DeserializeOwned>(
    layout: &Layout,
    snapshot: &SnapshotId,
    list: &RecordsList,
) -> Result<Vec<T>, RepoError> {
    let mut out = Vec::new();
    for id in &list.0 {
        out.extend(read_file(layout, snapshot, id)?);
    }
    Ok(out)
}

/// One records file of snapshot `snapshot`'s list.
pub fn read_file<T: serde::de::DeserializeOwned>(
    layout: &Layout,
    snapshot: &SnapshotId,
    id: &RecordsId,
) -> Result<Vec<T>, RepoError> {
    let path = layout.records(id);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(RepoError::corrupt(
                &path,
                format!(
                    "the records of snapshot {snapshot} are missing; restore the file from a \
                     copy of the repository, or forget the snapshot"
                ),
            ));
        }
        Err(e) => return Err(RepoError::io("cannot read", &path)(e)),
    };
    parse_records(&path, id, bytes)
}

/// Parses a records file read from `path`, which must be the file named `id`.
pub fn parse_records<T: serde::de::DeserializeOwned>(
    path: &Path,
    id: &RecordsId,
    bytes: Vec<u8>,
) -> Result<Vec<T>, RepoError> {
    if RecordsId::of(&bytes) != *id {
        return Err(RepoError::corrupt(
            path,
            "the file's SHA-256 is not its name: it was damaged after it was written",
        ));
    }
    let json = compressed::decompress(&bytes)
        .map_err(|e| RepoError::corrupt(path, format!("cannot decompress: {e}")))?;
    drop(bytes);
    serde_json::from_slice(&json).map_err(|e| RepoError::corrupt(path, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(range: std::ops::Range<u32>) -> Vec<Vec<u8>> {
        range
            .map(|n| format!("{{\"uidl\":\"u{n}\",\"list_size\":{n}}}").into_bytes())
            .collect()
    }

    fn write(layout: &Layout, lines: &[Vec<u8>]) -> RecordsList {
        let mut w = RecordsWriter::new(layout);
        for l in lines {
            w.push(l).unwrap();
        }
        w.finish().unwrap()
    }

    fn layout() -> (tempfile::TempDir, Layout) {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        for d in super::super::layout::DIRECTORIES {
            std::fs::create_dir_all(layout.dir(d)).unwrap();
        }
        (dir, layout)
    }

    #[derive(serde::Deserialize, PartialEq, Debug)]
    struct Line {
        uidl: String,
        list_size: u32,
    }

    #[test]
    fn a_list_reads_back_in_order_and_an_empty_one_names_a_file() {
        let (_dir, layout) = layout();
        let snapshot = SnapshotId::new(chrono::Utc::now());
        let all = lines(0..3000);
        let list = write(&layout, &all);
        assert!(list.0.len() > 3, "3,000 records make several files");
        let back: Vec<Line> = read_list(&layout, &snapshot, &list).unwrap();
        assert_eq!(back.len(), 3000);
        assert!(
            back.iter()
                .enumerate()
                .all(|(i, l)| l.list_size == i as u32 && l.uidl == format!("u{i}"))
        );

        let empty = write(&layout, &[]);
        assert_eq!(empty.0.len(), 1);
        assert!(
            read_list::<Line>(&layout, &snapshot, &empty)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_list_that_lost_and_gained_records_shares_the_runs_between() {
        let (_dir, layout) = layout();
        let before = write(&layout, &lines(0..5000));
        // The server deleted its oldest 40 messages, and 25 arrived.
        let after = write(&layout, &lines(40..5025));
        let shared = after.0.iter().filter(|id| before.0.contains(id)).count();
        assert!(
            shared + 2 >= after.0.len(),
            "all but the first and last runs are shared: {shared} of {}",
            after.0.len()
        );
        let files = std::fs::read_dir(layout.dir(super::super::layout::RECORDS))
            .unwrap()
            .count();
        assert_eq!(files, before.0.len() + after.0.len() - shared);
    }

    #[test]
    fn a_run_never_exceeds_the_maximum() {
        let (_dir, layout) = layout();
        // Lines that never end a run by their hash: two full runs and ten records.
        let lines: Vec<Vec<u8>> = (0..)
            .map(|n| format!("{{\"uidl\":\"x{n}\",\"list_size\":{n}}}").into_bytes())
            .filter(|line| !ends_run(line))
            .take(2 * MAX_RECORDS_PER_FILE + 10)
            .collect();
        let list = write(&layout, &lines);
        assert_eq!(list.0.len(), 3);
        let snapshot = SnapshotId::new(chrono::Utc::now());
        let sizes: Vec<usize> = list
            .0
            .iter()
            .map(|id| read_file::<Line>(&layout, &snapshot, id).unwrap().len())
            .collect();
        assert_eq!(sizes, [MAX_RECORDS_PER_FILE, MAX_RECORDS_PER_FILE, 10]);
        let back: Vec<Line> = read_list(&layout, &snapshot, &list).unwrap();
        assert!(back.iter().zip(&lines).all(|(b, l)| l
            == format!("{{\"uidl\":\"{}\",\"list_size\":{}}}", b.uidl, b.list_size).as_bytes()));
    }

    #[test]
    fn a_damaged_or_missing_file_is_an_error_that_names_it() {
        let (_dir, layout) = layout();
        let snapshot = SnapshotId::new(chrono::Utc::now());
        let list = write(&layout, &lines(0..1000));
        let path = layout.records(&list.0[0]);
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 1;
        durable::write_file(&layout.tmp(), &path, &bytes).unwrap();
        let e = read_list::<Line>(&layout, &snapshot, &list).unwrap_err();
        assert!(e.to_string().contains("SHA-256 is not its name"), "{e}");
        std::fs::remove_file(&path).unwrap();
        let e = read_list::<Line>(&layout, &snapshot, &list).unwrap_err();
        assert!(e.to_string().contains("are missing"), "{e}");
        assert!(e.to_string().contains(&list.0[0].to_string()), "{e}");
    }
}
