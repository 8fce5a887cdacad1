//! `popbackup verify`: clean on a good repository, and on damaged copies of it — a flipped
//! byte, a truncated pack, a deleted pack, a corrupt manifest, a lost index, a renamed pack —
//! it names exactly the affected messages, packs and snapshots, and nothing else.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use popbackup::repo::{MessageHash, PackId, Repository};
use serde_json::Value;

use crate::snapshot::stderr;
use crate::support::store::{TestRepo, on_every_backend};
use crate::support::{corpus_messages, manifest, record};

/// A repository holding the corpus in several packs, with two snapshots: account `a` holds the
/// first two thirds of the messages, account `b` the last two thirds (they overlap).
struct Fixture {
    _dir: tempfile::TempDir,
    repo: PathBuf,
}

/// The fixture's repository, written at `at`: the corpus in packs of 150 messages, in two
/// snapshots (of two accounts) that share a third of it.
fn build_fixture(at: impl Into<popbackup::repo::RepoLocation>) -> Option<()> {
    let corpus = corpus_messages()?;
    let mut writer = Repository::init(at).unwrap().lock("test").unwrap();
    let mut stored = Vec::new();
    for (i, (_, bytes)) in corpus.iter().enumerate() {
        let s = writer.store_bytes(bytes).unwrap();
        stored.push((
            s.hash(),
            bytes.len() as u64,
            popbackup::mail::summarize(bytes),
        ));
        // Small packs, so that damage to one leaves others intact.
        if i % 150 == 149 {
            writer.flush().unwrap();
        }
    }
    let n = stored.len();
    for (account, range, second) in [("a", 0..2 * n / 3, 0), ("b", n / 3..n, 1)] {
        let time = chrono::DateTime::from_timestamp(1_767_225_600 + second, 0).unwrap();
        let manifest = manifest(
            account,
            time,
            stored[range]
                .iter()
                .enumerate()
                .map(|(i, (hash, size, h))| {
                    record(
                        i as u32 + 1,
                        format!("{account}-{i}"),
                        *hash,
                        *size,
                        h.clone(),
                    )
                })
                .collect(),
        );
        writer.commit(&manifest).unwrap();
    }
    drop(writer);
    Some(())
}

fn fixture() -> Option<&'static Fixture> {
    static FIXTURE: OnceLock<Option<Fixture>> = OnceLock::new();
    FIXTURE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let repo = dir.path().join("archive");
            build_fixture(&repo)?;
            Some(Fixture { _dir: dir, repo })
        })
        .as_ref()
}

/// A fresh copy of the fixture to damage.
fn copy() -> Option<(tempfile::TempDir, PathBuf)> {
    let fixture = fixture()?;
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .arg("-a")
        .arg(&fixture.repo)
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let repo = dir.path().join("archive");
    Some((dir, repo))
}

fn verify(repo: &Path, args: &[&str], code: i32) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_popbackup"))
        .arg("--repo")
        .arg(repo)
        .arg("verify")
        .arg("--json")
        .args(args)
        .env("XDG_CONFIG_HOME", repo.parent().unwrap())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}\n{}",
        stderr(&out),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `verify --json ARGS` on `at`, through its configuration.
fn verify_at(at: &TestRepo, args: &[&str], code: i32) -> Value {
    let mut all = vec!["verify", "--json"];
    all.extend(args);
    let out = at.command(&all).output().unwrap();
    assert_eq!(out.status.code(), Some(code), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn hashes(list: &Value) -> BTreeSet<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn damaged_hashes(report: &Value) -> BTreeSet<String> {
    report["damaged_messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["hash"].as_str().unwrap().to_string())
        .collect()
}

/// Which snapshots refer to each message, from the manifests.
fn references(repo: &Repository) -> HashMap<MessageHash, BTreeSet<String>> {
    let mut out: HashMap<MessageHash, BTreeSet<String>> = HashMap::new();
    for id in repo.snapshots().unwrap() {
        for r in repo.manifest(&id).unwrap().messages {
            out.entry(r.sha256.unwrap())
                .or_default()
                .insert(id.to_string());
        }
    }
    out
}

/// A pack entry: hash, offset, length.
type Entry = (MessageHash, u64, u64);

/// The packs and their entries, by offset.
fn packs(repo: &Repository) -> Vec<(PackId, Vec<Entry>)> {
    let mut by_pack: HashMap<PackId, Vec<Entry>> = HashMap::new();
    for (hash, loc) in repo.index().messages() {
        by_pack
            .entry(loc.pack)
            .or_default()
            .push((*hash, loc.entry.offset, loc.entry.length));
    }
    let mut out: Vec<_> = by_pack.into_iter().collect();
    out.sort();
    for (_, entries) in &mut out {
        entries.sort_by_key(|e| e.1);
    }
    out
}

/// One of the repository's index files.
fn first_index_file(repo: &Path) -> PathBuf {
    std::fs::read_dir(crate::support::files::index_dir(repo))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
}

/// The snapshots a set of messages concerns.
fn snapshots_of(
    refs: &HashMap<MessageHash, BTreeSet<String>>,
    hashes: &[MessageHash],
) -> BTreeSet<String> {
    hashes
        .iter()
        .flat_map(|h| refs.get(h).cloned().unwrap_or_default())
        .collect()
}

#[test]
fn a_clean_repository_verifies_clean_and_is_recorded() {
    let Some((_dir, path)) = copy() else { return };
    std::fs::write(path.join("tmp").join(".tmp-pack-123-0"), b"left over").unwrap();
    let report = verify(&path, &[], 0);
    assert_eq!(report["clean"], true, "{report}");
    assert!(report["damaged_messages"].as_array().unwrap().is_empty());
    let repo = Repository::open(&path).unwrap();
    assert_eq!(report["messages"], repo.index().len());
    assert_eq!(report["messages_read"], repo.index().len());
    assert_eq!(report["verified_snapshots"].as_array().unwrap().len(), 2);
    let notes = report["notes"].to_string();
    assert!(notes.contains("stray temporary file"), "{notes}");
    // Recorded crash-safely for the retention rules.
    let state = Repository::open(&path).unwrap().verified_state().unwrap();
    assert_eq!(state.snapshots.len(), 2);
    assert_eq!(state.packs.len(), packs(&repo).len());
    // Quick: structure only, still clean.
    let quick = verify(&path, &["--quick"], 0);
    assert_eq!(quick["messages_read"], 0);
    assert!(quick["packs_read"].as_array().unwrap().is_empty());
}

#[test]
fn a_flipped_byte_names_exactly_its_message() {
    let Some((_dir, path)) = copy() else { return };
    let repo = Repository::open(&path).unwrap();
    let refs = references(&repo);
    let (pack, entries) = &packs(&repo)[1];
    let (hash, offset, length) = entries[entries.len() / 2];
    let file = crate::support::files::pack(repo.storage().local_path().unwrap(), pack);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[(offset + length / 2) as usize] ^= 0x55;
    std::fs::write(&file, bytes).unwrap();

    let report = verify(&path, &[], 65);
    assert_eq!(
        damaged_hashes(&report),
        BTreeSet::from([hash.to_hex()]),
        "{report}"
    );
    let damaged = &report["damaged_messages"][0];
    let referenced: BTreeSet<String> = damaged["references"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["snapshot"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(referenced, refs[&hash]);
    assert!(
        damaged["references"][0]["subject"].is_string()
            || damaged["references"][0]["subject"].is_null()
    );
    let packs_report = report["damaged_packs"].as_array().unwrap();
    assert_eq!(packs_report.len(), 1);
    assert_eq!(packs_report[0]["pack"], pack.to_hex());
    assert_eq!(
        hashes(&packs_report[0]["lost"]),
        BTreeSet::from([hash.to_hex()])
    );
    let readable: BTreeSet<String> = entries
        .iter()
        .filter(|e| e.0 != hash)
        .map(|e| e.0.to_hex())
        .collect();
    assert_eq!(hashes(&packs_report[0]["readable"]), readable);
    assert!(report["damaged_snapshots"].as_array().unwrap().is_empty());
    assert!(
        report["index_problems"].as_array().unwrap().is_empty(),
        "{report}"
    );
    // The verification record no longer counts the affected snapshots.
    let state = Repository::open(&path).unwrap().verified_state().unwrap();
    for s in &refs[&hash] {
        assert!(!state.snapshots.keys().any(|k| k.as_str() == s));
    }
}

#[test]
fn a_truncated_pack_names_what_was_cut_off() {
    let Some((_dir, path)) = copy() else { return };
    let repo = Repository::open(&path).unwrap();
    let refs = references(&repo);
    let (pack, entries) = &packs(&repo)[2];
    let file = crate::support::files::pack(repo.storage().local_path().unwrap(), pack);
    let len = std::fs::metadata(&file).unwrap().len();
    let cut = len / 2;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(cut)
        .unwrap();
    let lost: Vec<MessageHash> = entries
        .iter()
        .filter(|e| e.1 + e.2 > cut)
        .map(|e| e.0)
        .collect();
    let kept: BTreeSet<String> = entries
        .iter()
        .filter(|e| e.1 + e.2 <= cut)
        .map(|e| e.0.to_hex())
        .collect();
    let report = verify(&path, &[], 65);
    let expected: BTreeSet<String> = lost
        .iter()
        .filter(|h| refs.contains_key(h))
        .map(|h| h.to_hex())
        .collect();
    assert_eq!(damaged_hashes(&report), expected, "{report}");
    let packs_report = report["damaged_packs"].as_array().unwrap();
    assert_eq!(packs_report.len(), 1, "{report}");
    assert_eq!(hashes(&packs_report[0]["readable"]), kept);
    assert_eq!(
        hashes(&packs_report[0]["lost"]),
        lost.iter().map(|h| h.to_hex()).collect()
    );
    let concerned: BTreeSet<String> = packs_report[0]["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    let all: Vec<MessageHash> = entries.iter().map(|e| e.0).collect();
    assert_eq!(concerned, snapshots_of(&refs, &all));
    assert!(report["damaged_snapshots"].as_array().unwrap().is_empty());
}

#[test]
fn a_deleted_pack_names_its_messages() {
    let Some((_dir, path)) = copy() else { return };
    let repo = Repository::open(&path).unwrap();
    let refs = references(&repo);
    let (pack, entries) = &packs(&repo)[0];
    std::fs::remove_file(crate::support::files::pack(
        repo.storage().local_path().unwrap(),
        pack,
    ))
    .unwrap();
    let report = verify(&path, &[], 65);
    let expected: BTreeSet<String> = entries
        .iter()
        .filter(|e| refs.contains_key(&e.0))
        .map(|e| e.0.to_hex())
        .collect();
    assert_eq!(damaged_hashes(&report), expected, "{report}");
    for m in report["damaged_messages"].as_array().unwrap() {
        assert!(m["problem"].as_str().unwrap().contains("missing"));
    }
    let packs_report = report["damaged_packs"].as_array().unwrap();
    assert_eq!(packs_report.len(), 1);
    assert_eq!(packs_report[0]["pack"], pack.to_hex());
    assert!(report["damaged_snapshots"].as_array().unwrap().is_empty());
}

#[test]
fn a_corrupt_manifest_names_its_snapshot() {
    let Some((_dir, path)) = copy() else { return };
    let repo = Repository::open(&path).unwrap();
    let id = repo.snapshots().unwrap()[0].clone();
    let file = crate::support::files::snapshot(repo.storage().local_path().unwrap(), &id);
    let mut text = std::fs::read(&file).unwrap();
    text.truncate(text.len() / 2);
    std::fs::write(&file, text).unwrap();
    let report = verify(&path, &[], 65);
    let snapshots = report["damaged_snapshots"].as_array().unwrap();
    assert_eq!(snapshots.len(), 1, "{report}");
    assert_eq!(snapshots[0]["snapshot"], id.as_str());
    assert!(report["damaged_messages"].as_array().unwrap().is_empty());
    assert!(report["damaged_packs"].as_array().unwrap().is_empty());
    assert!(report["index_problems"].as_array().unwrap().is_empty());
}

#[test]
fn a_lost_index_is_not_damage() {
    let Some((_dir, path)) = copy() else { return };
    std::fs::remove_dir_all(crate::support::files::index_dir(&path)).unwrap();
    let report = verify(&path, &[], 0);
    assert_eq!(report["clean"], true, "{report}");
    // A corrupt index file is only a note as well.
    let repo = Repository::open(&path).unwrap();
    assert!(!repo.index().is_empty(), "rebuilt from the packs");
    std::fs::write(first_index_file(&path), b"{ not json").unwrap();
    let report = verify(&path, &[], 0);
    assert!(
        report["notes"]
            .to_string()
            .contains("unreadable and ignored"),
        "{report}"
    );
}

#[test]
fn an_index_file_that_misplaces_a_message_is_named() {
    let Some((_dir, path)) = copy() else { return };
    let file = first_index_file(&path);
    let bytes = zstd::decode_all(&std::fs::read(&file).unwrap()[..]).unwrap();
    let mut index: Value = serde_json::from_slice(&bytes).unwrap();
    // One entry of the last pack the file lists moved by a byte; the packs stay intact.
    let listed = index["packs"].as_array_mut().unwrap().last_mut().unwrap();
    let pack = listed["id"].as_str().unwrap().to_string();
    let entry = &mut listed["entries"][0];
    entry["offset"] = (entry["offset"].as_u64().unwrap() + 1).into();
    let name = "ab".repeat(32);
    std::fs::remove_file(&file).unwrap();
    std::fs::write(
        crate::support::files::index_file(&path, &name),
        // `version` first, as the format requires (a `Value` would sort it after `packs`).
        zstd::encode_all(
            format!(
                r#"{{"version":{},"packs":{}}}"#,
                index["version"], index["packs"]
            )
            .as_bytes(),
            3,
        )
        .unwrap(),
    )
    .unwrap();
    let report = verify(&path, &[], 65);
    let problems = report["index_problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{report}");
    let problem = problems[0].as_str().unwrap();
    assert!(
        problem.contains(&format!(
            "index file {name} places 1 message(s) in pack {pack}"
        )),
        "{problem}"
    );
    assert!(report["damaged_packs"].as_array().unwrap().is_empty());
    assert!(report["damaged_messages"].as_array().unwrap().is_empty());
}

#[test]
fn a_renamed_pack_is_named_and_its_messages_stay_readable() {
    let Some((_dir, path)) = copy() else { return };
    let repo = Repository::open(&path).unwrap();
    let (pack, entries) = &packs(&repo)[3];
    let wrong = PackId::of(b"not the content");
    std::fs::rename(
        crate::support::files::pack(repo.storage().local_path().unwrap(), pack),
        crate::support::files::pack(repo.storage().local_path().unwrap(), &wrong),
    )
    .unwrap();
    let report = verify(&path, &[], 65);
    assert!(
        report["damaged_messages"].as_array().unwrap().is_empty(),
        "{report}"
    );
    let packs_report = report["damaged_packs"].as_array().unwrap();
    assert_eq!(packs_report.len(), 1, "{report}");
    assert_eq!(packs_report[0]["pack"], wrong.to_hex());
    assert!(
        packs_report[0]["problems"]
            .to_string()
            .contains("does not match its name")
    );
    assert_eq!(
        hashes(&packs_report[0]["readable"]),
        entries.iter().map(|e| e.0.to_hex()).collect()
    );
    let index = report["index_problems"].to_string();
    assert!(index.contains(&pack.to_hex()), "{index}");
    assert!(report["damaged_snapshots"].as_array().unwrap().is_empty());
}

on_every_backend! {
    fn data_subsets_cover_the_repository_over_several_runs(at: &TestRepo) {
        if build_fixture(&at.location).is_none() {
            return;
        }
        let repo = Repository::open(&at.location).unwrap();
        let all: BTreeSet<String> = packs(&repo).iter().map(|p| p.0.to_hex()).collect();
        assert!(all.len() >= 5, "the fixture has {} packs", all.len());
        let mut read = BTreeSet::new();
        let mut total = 0;
        for k in 1..=3 {
            let part = format!("{k}/3");
            let report = verify_at(at, &["--read-data-subset", &part], 0);
            let this = hashes(&report["packs_read"]);
            total += this.len();
            read.extend(this);
        }
        assert_eq!(read, all, "1/3, 2/3 and 3/3 together read every pack");
        assert_eq!(total, all.len(), "and each exactly once");
        let report = verify_at(at, &["--read-data-subset", "100%"], 0);
        assert_eq!(hashes(&report["packs_read"]), all);
    }

    /// What `verify` says vouches for the data: this run's reads, or earlier ones (with the date),
    /// never "verified" after reading nothing without saying so.
    fn quick_says_which_check_verified_the_data(at: &TestRepo) {
        if build_fixture(&at.location).is_none() {
            return;
        }
        let human = |args: &[&str]| {
            let mut all = vec!["verify"];
            all.extend(args);
            let out = at.command(&all).output().unwrap();
            assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let never = human(&["--quick"]);
        assert!(never.contains("no data has been read back yet"), "{never}");
        let full = human(&[]);
        assert!(
            full.contains("2 of 2 snapshots have all their data verified by this check"),
            "{full}"
        );
        let quick = human(&["--quick"]);
        assert!(
            quick.contains(
                "2 of 2 snapshots have all their data verified by earlier checks, the oldest of 20"
            ),
            "{quick}"
        );
    }
}
