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
use super::backend::FileKind;
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

/// What goes into a message list: a record, or a records file already written whose records
/// are, unchanged, the next `records` of the list (a night names most of the last
/// snapshot's files again without reading and writing their records).
#[derive(Debug)]
// Items pass one at a time from the run to the writer; boxing would allocate for each record.
#[allow(clippy::large_enum_variant)]
pub enum ListItem {
    Record(super::MessageRecord),
    File { id: RecordsId, records: usize },
}

/// Cuts a message list, one serialized record at a time, into records files, writing those
/// the repository does not hold yet. Nothing is visible under a final name before
/// [`RecordsWriter::publish`] or [`RecordsWriter::finish`] publishes the new files together.
///
/// A snapshot run keeps one writer from its first checkpoint to its commit and pushes each
/// record once, when it is final: a checkpoint then names the runs cut so far (and the open
/// run's records as a file of their own), instead of rewriting every record stored so far,
/// and the run holds only the records not yet pushed.
pub struct RecordsWriter {
    layout: Layout,
    /// The open run as it will be compressed: `[`, then its lines separated by `,`. Kept
    /// uncompressed (a run averages 256 records, 60 kB) so that a checkpoint can write it.
    open: Vec<u8>,
    in_run: usize,
    pushed: usize,
    names: Vec<RecordsId>,
    /// Files written to scratch files, to publish together.
    new_files: Vec<(String, durable::TempFile)>,
    /// A record pushed had no content (its message was never retrieved).
    lacks_content: bool,
}

impl RecordsWriter {
    pub fn new(layout: &Layout) -> RecordsWriter {
        RecordsWriter {
            layout: layout.clone(),
            open: Vec::new(),
            in_run: 0,
            pushed: 0,
            names: Vec::new(),
            new_files: Vec::new(),
            lacks_content: false,
        }
    }

    /// How many records were pushed: the position in the whole list of the next one.
    pub fn len(&self) -> usize {
        self.pushed
    }

    pub fn is_empty(&self) -> bool {
        self.pushed == 0
    }

    /// Notes that a record pushed has no content: the list does not archive everything listed.
    pub(super) fn note_lacking_content(&mut self) {
        self.lacks_content = true;
    }

    pub(super) fn lacks_content(&self) -> bool {
        self.lacks_content
    }

    /// Appends one record, serialized as one line of JSON.
    pub fn push(&mut self, line: &[u8]) -> Result<(), RepoError> {
        self.open
            .extend_from_slice(if self.in_run == 0 { b"[\n" } else { b",\n" });
        self.open.extend_from_slice(line);
        self.in_run += 1;
        self.pushed += 1;
        if ends_run(line) || self.in_run >= MAX_RECORDS_PER_FILE {
            self.end_run()?;
        }
        Ok(())
    }

    /// Appends an existing records file holding the next `records` records. The open run ends
    /// before it (a cut the records do not ask for; the list is the same concatenation).
    pub fn push_file(&mut self, id: RecordsId, records: usize) -> Result<(), RepoError> {
        if self.in_run > 0 {
            self.end_run()?;
        }
        self.names.push(id);
        self.pushed += records;
        Ok(())
    }

    /// Ends the open run: its file is written (unless it exists) and named.
    fn end_run(&mut self) -> Result<(), RepoError> {
        let (id, _) = self.write_open_run()?;
        self.names.push(id);
        self.open.clear();
        self.in_run = 0;
        Ok(())
    }

    /// Writes the open run (`[]` when it is empty) as a file unless it exists, and names it;
    /// true when the file is new (not found).
    fn write_open_run(&mut self) -> Result<(RecordsId, bool), RepoError> {
        let mut run = compressed::Writer::new(self.open.len() / 4 + 64).map_err(cannot_write)?;
        if self.in_run == 0 {
            run.write_all(b"[\n").map_err(cannot_write)?;
        } else {
            run.write_all(&self.open).map_err(cannot_write)?;
        }
        run.write_all(b"\n]").map_err(cannot_write)?;
        let bytes = run.finish().map_err(cannot_write)?;
        let id = RecordsId(self.layout.codec().content_name(&bytes));
        let name = id.to_string();
        let new = !self.names.contains(&id)
            && self
                .layout
                .backend()
                .size(FileKind::Records, &name)
                .is_err();
        if new {
            let tmp = self.layout.backend().scratch();
            let mut temp = durable::TempFile::new(&tmp, "records")
                .map_err(RepoError::io("cannot create a file in", &tmp))?;
            let stored = self
                .layout
                .codec()
                .seal_file(FileKind::Records, &name, &bytes)
                .map_err(RepoError::io("cannot seal", temp.path()))?;
            temp.file()
                .write_all(&stored)
                .map_err(RepoError::io("cannot write", temp.path()))?;
            self.new_files.push((name, temp));
        }
        Ok((id, new))
    }

    /// Publishes the files cut so far, and the open run's records as a file of their own,
    /// and names the list as it stands (for a checkpoint), with that file of the open run
    /// when this writer made it. Pushing goes on after: the open run is still open, so the
    /// final list is cut as if there had been no checkpoint.
    pub fn publish(&mut self) -> Result<(RecordsList, Option<RecordsId>), RepoError> {
        let mut names = self.names.clone();
        let mut made = None;
        if self.in_run > 0 {
            let (id, new) = self.write_open_run()?;
            made = new.then_some(id);
            names.push(id);
        }
        self.publish_new_files()?;
        Ok((RecordsList(names), made))
    }

    /// Publishes the new files (one file-system sync for all) and names the list. An empty
    /// list is one file holding `[]`, so a committed snapshot always names a file.
    ///
    /// A file [`RecordsWriter::publish`] made of an open run stays when the list does not
    /// name it: another account's run under the same lock may have found it and named it
    /// (the same mailbox configured twice). `RepoWriter::close` removes it.
    pub fn finish(mut self) -> Result<RecordsList, RepoError> {
        if self.in_run > 0 || self.names.is_empty() {
            self.end_run()?;
        }
        self.publish_new_files()?;
        Ok(RecordsList(self.names))
    }

    fn publish_new_files(&mut self) -> Result<(), RepoError> {
        if self.new_files.is_empty() {
            return Ok(());
        }
        let backend = self.layout.backend();
        backend
            .publish_all(FileKind::Records, std::mem::take(&mut self.new_files))
            .map(drop)
            .map_err(RepoError::io(
                "cannot write records files in",
                backend.location(FileKind::Records, "*"),
            ))
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
    let Some(bytes) = layout.read_if_exists(FileKind::Records, &id.to_string())? else {
        return Err(RepoError::corrupt(
            &path,
            format!(
                "the records of snapshot {snapshot} are missing; restore the file from a copy \
                 of the repository, or forget the snapshot"
            ),
        ));
    };
    if RecordsId(layout.codec().content_name(&bytes)) != *id {
        return Err(name_mismatch(&path));
    }
    parse_checked(&path, bytes)
}

/// Parses a records file read from `path`, which must be the file named `id` (of a plain
/// repository: named by the SHA-256 of its bytes).
pub fn parse_records<T: serde::de::DeserializeOwned>(
    path: &Path,
    id: &RecordsId,
    bytes: Vec<u8>,
) -> Result<Vec<T>, RepoError> {
    if RecordsId::of(&bytes) != *id {
        return Err(name_mismatch(path));
    }
    parse_checked(path, bytes)
}

fn name_mismatch(path: &Path) -> RepoError {
    RepoError::corrupt(
        path,
        "the file's SHA-256 is not its name: it was damaged after it was written",
    )
}

/// Parses a records file whose content was checked against its name.
fn parse_checked<T: serde::de::DeserializeOwned>(
    path: &Path,
    bytes: Vec<u8>,
) -> Result<Vec<T>, RepoError> {
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

    /// Checkpoints in the middle change nothing of the final list, and each names the records
    /// pushed so far.
    #[test]
    fn checkpoints_name_what_was_pushed_and_leave_the_final_list_alone() {
        let (_dir, layout) = layout();
        let snapshot = SnapshotId::new(chrono::Utc::now());
        let all = lines(0..3000);
        let (_other, plain_layout) = self::layout();
        let plain = write(&plain_layout, &all);

        let mut w = RecordsWriter::new(&layout);
        for (n, line) in all.iter().enumerate() {
            w.push(line).unwrap();
            if n % 700 == 0 {
                let (so_far, _) = w.publish().unwrap();
                let back: Vec<Line> = read_list(&layout, &snapshot, &so_far).unwrap();
                assert_eq!(back.len(), n + 1, "a checkpoint names every record pushed");
                assert_eq!(back[n].uidl, format!("u{n}"));
            }
        }
        let list = w.finish().unwrap();
        assert_eq!(list, plain, "the same files as without checkpoints");
        let back: Vec<Line> = read_list(&layout, &snapshot, &list).unwrap();
        assert_eq!(back.len(), 3000);
    }

    /// Runs are byte for byte what the writer of format 5 made, which compressed each line as
    /// it came: a new popbackup shares the runs of snapshots an older one wrote.
    #[test]
    fn runs_are_the_files_earlier_versions_wrote() {
        let (_dir, layout) = layout();
        let all = lines(0..3000);
        let list = write(&layout, &all);
        let mut expected = Vec::new();
        let mut run: Option<compressed::Writer> = None;
        let close = |mut w: compressed::Writer| {
            w.write_all(b"\n]").unwrap();
            RecordsId::of(&w.finish().unwrap())
        };
        for line in &all {
            let w = match &mut run {
                Some(w) => {
                    w.write_all(b",\n").unwrap();
                    w
                }
                None => {
                    let mut w = compressed::Writer::new(64 << 10).unwrap();
                    w.write_all(b"[\n").unwrap();
                    run.insert(w)
                }
            };
            w.write_all(line).unwrap();
            if ends_run(line) {
                expected.push(close(run.take().unwrap()));
            }
        }
        expected.extend(run.take().map(close));
        assert!(expected.len() > 3);
        assert_eq!(list.0, expected);
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
