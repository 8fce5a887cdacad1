//! The repository: byte-exact round trips, deduplication, the index as a rebuildable cache,
//! one writer at a time, crash safety under SIGKILL, and a repository read with only `tar`,
//! `zstd` and `jq`-style JSON, as docs/FORMAT.md promises.

use popbackup::cli::exit::for_kind;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use popbackup::repo::{
    Location, Manifest, MessageHash, MessageRecord, RecordsId, RepoError, Repository, ServerInfo,
    SnapshotId, Stored, Tool,
};

use crate::support::corpus_messages;
use crate::support::store::on_every_backend;

on_every_backend! {
    fn corpus_round_trip_is_byte_exact_and_deduplicated(repo_at: &TestRepo) {
        let Some(corpus) = corpus_messages() else {
            return;
        };
        let mut writer = Repository::init(&repo_at.location)
            .unwrap()
            .lock("test")
            .unwrap();
        let mut stored = Vec::new();
        for (_, bytes) in &corpus {
            stored.push(writer.store_bytes(bytes).unwrap());
        }
        // Every message a second time: nothing new is written.
        for (_, bytes) in &corpus {
            assert!(matches!(
                writer.store_bytes(bytes).unwrap(),
                Stored::Duplicate(..)
            ));
        }
        writer.flush().unwrap();
        let hashes: Vec<(MessageHash, u64)> = stored.iter().map(|s| (s.hash(), s.raw_len())).collect();
        let manifest = manifest_for(writer.repo(), "corpus", &hashes);
        writer.commit(&manifest).unwrap();
        let repo = writer.finish().unwrap();
        assert_eq!(repo.storage(), &repo_at.location);

        let unique: std::collections::HashSet<_> =
            corpus.iter().map(|(_, b)| MessageHash::of(b)).collect();
        assert_eq!(repo.index().len(), unique.len());
        for (name, bytes) in &corpus {
            let got = repo.read_message(&MessageHash::of(bytes)).unwrap();
            assert!(got == *bytes, "{name} differs after the round trip");
        }
        let ids = repo.snapshots().unwrap();
        assert_eq!(ids, vec![manifest.id.clone()]);
        let back = repo.manifest(&ids[0]).unwrap();
        assert!(back.complete);
        assert_eq!(back.messages.len(), corpus.len());
        // The whole corpus compresses: the packs are smaller than the messages.
        let raw: u64 = unique.len() as u64;
        assert!(raw > 0);
        let packs: u64 = repo
            .pack_ids()
            .unwrap()
            .iter()
            .map(|id| repo.pack_size(id).unwrap())
            .sum();
        let total: u64 = corpus.iter().map(|(_, b)| b.len() as u64).sum();
        assert!(packs < total, "packs {packs} >= raw {total}");
    }

    fn a_second_writer_fails_fast_naming_the_first(repo: &TestRepo) {
        let first = Repository::init(&repo.location)
            .unwrap()
            .lock("snapshot")
            .unwrap();
        let err = Repository::open(&repo.location)
            .unwrap()
            .lock("prune")
            .err()
            .unwrap();
        assert!(matches!(err, RepoError::Locked { .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert_eq!(for_kind(err.kind()), 75);
        drop(first);
        Repository::open(&repo.location).unwrap().lock("prune").unwrap();
    }
}

/// A manifest for `hashes` in account `account`.
pub fn manifest_for(repo: &Repository, account: &str, hashes: &[(MessageHash, u64)]) -> Manifest {
    let now = chrono::Utc::now();
    Manifest {
        version: 1,
        id: SnapshotId::new(now),
        time: now.to_rfc3339(),
        account: account.into(),
        complete: false,
        tool: Tool::default(),
        server: ServerInfo {
            host: "pop.example.org".into(),
            port: 995,
            tls: "implicit".into(),
            ..Default::default()
        },
        records: None,
        listing: None,
        messages: hashes
            .iter()
            .enumerate()
            .map(|(i, (hash, size))| {
                let loc = repo.location(hash);
                MessageRecord {
                    pack: loc.map(|l| l.pack),
                    offset: loc.map(|l| l.entry.offset),
                    length: loc.map(|l| l.entry.length),
                    ..MessageRecord::stored(i as u32 + 1, Some(format!("uid-{i}")), *hash, *size)
                }
            })
            .collect(),
    }
}

#[test]
fn small_messages_are_read_whole_and_checked_before_any_byte_is_handed_over() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = Repository::init(dir.path()).unwrap().lock("test").unwrap();
    let small = |i: usize| {
        format!("Subject: small {i}\r\n\r\n")
            .into_bytes()
            .into_iter()
            .chain(format!("line {i}\r\n").repeat(40 * (i + 1)).into_bytes())
            .collect::<Vec<u8>>()
    };
    // Incompressible: its frame is over a mebibyte, so it streams.
    let mut state = 7u64;
    let large: Vec<u8> = (0..(2 << 20))
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect();
    // Two packs, read alternately below: the pack kept open changes each time.
    let first: Vec<Vec<u8>> = (0..5).map(small).collect();
    let second: Vec<Vec<u8>> = (5..10).map(small).collect();
    for m in &first {
        writer.store_bytes(m).unwrap();
    }
    writer.flush().unwrap();
    for m in second.iter().chain([&large]) {
        writer.store_bytes(m).unwrap();
    }
    writer.flush().unwrap();
    let repo = writer.finish().unwrap();
    let packs: BTreeSet<_> = first
        .iter()
        .chain(&second)
        .map(|m| repo.location(&MessageHash::of(m)).unwrap().pack)
        .collect();
    assert_eq!(packs.len(), 2);
    for (a, b) in first.iter().zip(&second) {
        for m in [a, b] {
            let hash = MessageHash::of(m);
            assert_eq!(repo.read_small_message(&hash).unwrap().as_ref(), Some(m));
            assert_eq!(&repo.read_message(&hash).unwrap(), m);
            let mut out = Vec::new();
            assert_eq!(repo.copy_message(&hash, &mut out).unwrap(), m.len() as u64);
            assert_eq!(&out, m);
        }
    }
    let hash = MessageHash::of(&large);
    assert_eq!(repo.read_small_message(&hash).unwrap(), None);
    assert!(repo.read_message(&hash).unwrap() == large);
    let mut out = Vec::new();
    repo.copy_message(&hash, &mut out).unwrap();
    assert!(out == large);

    // A byte flipped in a small message's frame: an error naming the message, and not one
    // byte of it written.
    let victim = MessageHash::of(&second[2]);
    let location = repo.location(&victim).unwrap();
    let path = dir
        .path()
        .join("packs")
        .join(format!("{}.tar", location.pack));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(location.entry.offset + location.entry.length / 2) as usize] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    for repo in [repo, Repository::open(dir.path()).unwrap()] {
        let mut out = Vec::new();
        let err = repo.copy_message(&victim, &mut out).unwrap_err();
        assert!(out.is_empty(), "{} bytes written", out.len());
        assert!(err.to_string().contains(&victim.to_string()), "{err}");
        assert!(repo.read_message(&victim).is_err());
        assert!(repo.read_small_message(&victim).is_err());
        // Its neighbours in the same pack still read.
        assert_eq!(
            &repo.read_message(&MessageHash::of(&second[1])).unwrap(),
            &second[1]
        );
    }
}

#[test]
fn deleting_the_index_rebuilds_it_identically() {
    let dir = tempfile::tempdir().unwrap();
    let messages: Vec<Vec<u8>> = (0..50)
        .map(|i| {
            format!("Subject: {i}\r\n\r\nbody {i}\r\n")
                .repeat(i + 1)
                .into_bytes()
        })
        .collect();
    let locations = repository_holding(dir.path(), &messages);
    for entry in std::fs::read_dir(dir.path().join("index")).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let reader = Repository::open(dir.path()).unwrap();
    assert_eq!(reader.unindexed_packs().len(), 1, "the pack is scanned");
    assert_eq!(located(&reader), locations);
    for m in &messages {
        assert_eq!(&reader.read_message(&MessageHash::of(m)).unwrap(), m);
    }
    // Even without the directory itself.
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let reader = Repository::open(dir.path()).unwrap();
    assert_eq!(reader.index().len(), messages.len());
    // A writer records the rebuilt index, so the next open needs no scan.
    drop(reader.lock("test").unwrap());
    assert!(
        Repository::open(dir.path())
            .unwrap()
            .unindexed_packs()
            .is_empty()
    );
}

#[test]
fn an_index_file_damaged_after_its_first_pack_is_ignored_whole() {
    let dir = tempfile::tempdir().unwrap();
    let messages: Vec<Vec<u8>> = (0..20)
        .map(|i| format!("Subject: {i}\r\n\r\nbody {i}\r\n").into_bytes())
        .collect();
    let locations = repository_holding(dir.path(), &messages);
    let file = std::fs::read_dir(dir.path().join("index"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    // The file cut after its first (and only) pack: the parser hands that pack over, then
    // finds the damage.
    let json = popbackup::repo::compressed::decompress(&std::fs::read(&file).unwrap()).unwrap();
    let parsed: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let cut = format!(r#"{{"version":1,"packs":[{},"#, parsed["packs"][0]);
    std::fs::write(
        &file,
        popbackup::repo::compressed::compress(cut.as_bytes()).unwrap(),
    )
    .unwrap();

    let reader = Repository::open(dir.path()).unwrap();
    assert_eq!(
        reader.unindexed_packs().len(),
        1,
        "nothing of the damaged file is kept: its pack is scanned"
    );
    assert!(reader.index().files().is_empty());
    assert_eq!(located(&reader), locations);
}

/// A new repository in `dir` that stores `messages`; where its index says they are.
fn repository_holding(dir: &Path, messages: &[Vec<u8>]) -> Vec<(MessageHash, Location)> {
    let mut writer = Repository::init(dir).unwrap().lock("test").unwrap();
    store_all(&mut writer, messages);
    located(&writer.finish().unwrap())
}

/// Every message of `repo`'s index with its location, by hash.
fn located(repo: &Repository) -> Vec<(MessageHash, Location)> {
    let mut all: Vec<_> = repo.index().messages().map(|(h, l)| (*h, l)).collect();
    all.sort_by_key(|(h, _)| *h);
    all
}

#[test]
fn a_lock_left_by_a_killed_process_is_recovered() {
    let dir = tempfile::tempdir().unwrap();
    Repository::init(dir.path()).unwrap();
    let mut child = crash_child(dir.path(), 1);
    wait_for_progress(dir.path());
    let err = Repository::open(dir.path())
        .unwrap()
        .lock("test")
        .err()
        .unwrap();
    assert!(
        matches!(&err, RepoError::Locked { holder, .. } if holder.pid == child.id()),
        "{err:?}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    Repository::open(dir.path()).unwrap().lock("test").unwrap();
}

#[test]
fn a_newer_format_is_refused_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    Repository::init(dir.path()).unwrap();
    let config = dir.path().join("config.json");
    use popbackup::repo::format::PLAIN_FORMAT_VERSION;
    let v = |n: u32| format!("\"version\": {n}");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(&v(PLAIN_FORMAT_VERSION), &v(99));
    std::fs::write(&config, text).unwrap();
    let err = Repository::open(dir.path()).unwrap_err();
    assert!(
        matches!(err, RepoError::UnsupportedVersion { found: 99, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("newer popbackup"));
    assert!(matches!(
        Repository::open(dir.path().join("nope")).unwrap_err(),
        RepoError::NotARepository { .. }
    ));
    assert!(matches!(
        Repository::init(dir.path()).unwrap_err(),
        RepoError::AlreadyExists { .. }
    ));
}

#[test]
fn files_are_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    let mut writer = Repository::init(&root).unwrap().lock("test").unwrap();
    writer.store_bytes(b"Subject: private\r\n\r\n").unwrap();
    writer.finish().unwrap();
    for entry in walkdir::WalkDir::new(&root) {
        let entry = entry.unwrap();
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        let want = if entry.file_type().is_dir() {
            0o700
        } else {
            0o600
        };
        assert_eq!(mode, want, "{}", entry.path().display());
    }
}

#[test]
fn dictionary_frames_round_trip_and_name_their_dictionary() {
    let Some(corpus) = corpus_messages() else {
        return;
    };
    let samples: Vec<&[u8]> = corpus
        .iter()
        .map(|(_, b)| b.as_slice())
        .filter(|b| b.len() < 16 * 1024)
        .collect();
    let dict = zstd::dict::from_samples(&samples, 32 * 1024).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut writer = Repository::init(dir.path()).unwrap().lock("test").unwrap();
    writer
        .store_bytes(b"Subject: before the dictionary\r\n\r\n")
        .unwrap();
    let dict_hash = writer.set_dictionary(dict).unwrap();
    for b in &samples[..200] {
        writer.store_bytes(b).unwrap();
    }
    writer.finish().unwrap();
    // Rebuild the index from the packs alone: the dictionary is found from the frame headers.
    for entry in std::fs::read_dir(dir.path().join("index")).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let repo = Repository::open(dir.path()).unwrap();
    for b in &samples[..200] {
        let hash = MessageHash::of(b);
        assert_eq!(repo.location(&hash).unwrap().entry.dict, Some(dict_hash));
        assert_eq!(&repo.read_message(&hash).unwrap(), b);
    }
    let before = MessageHash::of(b"Subject: before the dictionary\r\n\r\n");
    assert_eq!(repo.location(&before).unwrap().entry.dict, None);
}

/// Mail of one "kind": text drawn from its own vocabulary, so a dictionary trained on one kind
/// knows the words of that kind only.
fn mail_of_kind(words: &[&str], n: u64) -> Vec<u8> {
    let mut text = format!(
        "From: sender{}@example.org\r\nSubject: note {n}\r\n\r\n",
        n % 7
    );
    add_words(&mut text, n.wrapping_mul(0x9E37_79B9_7F4A_7C15), 600, |x| {
        words[(x % words.len() as u64) as usize].to_string()
    });
    text.into_bytes()
}

/// Appends `count` words, twelve to a line, each made by `word` from the next number of a
/// xorshift sequence started at `seed`.
fn add_words(text: &mut String, seed: u64, count: usize, word: impl Fn(u64) -> String) {
    let mut x = seed | 1;
    for i in 0..count {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        text.push_str(&word(x));
        text.push_str(if i % 12 == 11 { "\r\n" } else { " " });
    }
}

const KIND_A: &[&str] = &[
    "the", "meeting", "report", "budget", "project", "schedule", "review", "team", "update",
    "deadline", "client", "invoice", "quarter", "results", "please", "attached", "regards",
];
const KIND_B: &[&str] = &[
    "Rechnung",
    "Lieferung",
    "Bestellung",
    "freundlichen",
    "Grüßen",
    "Anhang",
    "bitte",
    "Zahlung",
    "Konto",
    "Vertrag",
    "Kündigung",
    "Termin",
    "Unterlagen",
    "beiliegend",
    "Frist",
];

#[test]
fn the_dictionary_is_retrained_only_when_that_pays_off() {
    let dir = tempfile::tempdir().unwrap();
    let repo_path = dir.path().join("r");
    Repository::init(&repo_path).unwrap();
    let config_of = || -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(repo_path.join("config.json")).unwrap()).unwrap()
    };
    let store = |kind: &[&str], range: std::ops::Range<u64>| -> Vec<Vec<u8>> {
        let mut writer = popbackup::repo::RepoWriter::open(&repo_path, "test").unwrap();
        let messages: Vec<Vec<u8>> = range.map(|n| mail_of_kind(kind, n)).collect();
        for m in &messages {
            writer.store_bytes(m).unwrap();
        }
        writer.finish().unwrap();
        messages
    };
    // Pretend the dictionary is old: the next writer samples for a new one.
    let make_due = || {
        let mut config = config_of();
        config["compression"]["dictionary_messages"] = serde_json::json!(1);
        std::fs::write(
            repo_path.join("config.json"),
            serde_json::to_vec(&config).unwrap(),
        )
        .unwrap();
    };

    // The first run trains a dictionary on kind A.
    let mut all = store(KIND_A, 0..400);
    let first = config_of()["compression"]["dictionary"].clone();
    assert!(first.is_string(), "{:?}", config_of());

    // More of the same kind: a new dictionary would not pay, so the old one stays, and the
    // repository's size at that moment is recorded for the next look.
    make_due();
    all.extend(store(KIND_A, 400..800));
    assert_eq!(config_of()["compression"]["dictionary"], first);
    assert!(
        config_of()["compression"]["dictionary_messages"]
            .as_u64()
            .unwrap()
            >= 700
    );

    // A different kind of mail: the old dictionary knows none of its words, a new one pays.
    make_due();
    let kind_b = store(KIND_B, 0..400);
    let second = config_of()["compression"]["dictionary"].clone();
    assert!(second.is_string() && second != first, "{:?}", config_of());
    all.extend(kind_b.iter().cloned());

    // Both dictionaries stay; every message reads back, each frame naming its own.
    let repo = Repository::open(&repo_path).unwrap();
    assert_eq!(
        std::fs::read_dir(repo_path.join("dicts")).unwrap().count(),
        2
    );
    for m in &all {
        assert_eq!(&repo.read_message(&MessageHash::of(m)).unwrap(), m);
    }
    let dict_of = |m: &[u8]| repo.location(&MessageHash::of(m)).unwrap().entry.dict;
    assert_eq!(
        dict_of(&kind_b[399]).map(|d| d.to_string()).as_deref(),
        second.as_str()
    );
    assert_eq!(
        dict_of(&all[500]).map(|d| d.to_string()).as_deref(),
        first.as_str()
    );
}

#[test]
fn runs_that_each_bring_little_mail_get_a_dictionary_made_from_stored_mail() {
    let dir = tempfile::tempdir().unwrap();
    let repo_path = dir.path().join("r");
    Repository::init(&repo_path).unwrap();
    // One nightly run: 60 small messages (about 250 kB), far from the 300 a run samples.
    let night = |range: std::ops::Range<u64>| -> Vec<Vec<u8>> {
        let mut writer = Repository::open(&repo_path).unwrap().lock("test").unwrap();
        let messages: Vec<Vec<u8>> = range.map(|n| mail_of_kind(KIND_A, n)).collect();
        let stored = store_all(&mut writer, &messages);
        let manifest = manifest_for(writer.repo(), "nightly", &stored);
        writer.commit(&manifest).unwrap();
        messages
    };
    let dictionary = || {
        Repository::open(&repo_path)
            .unwrap()
            .config()
            .compression
            .dictionary
    };
    let mut all = night(0..60);
    assert_eq!(dictionary(), None, "too little mail for a dictionary yet");
    all.extend(night(60..120));
    all.extend(night(120..180));
    // By now the stored mail is enough: a commit made a dictionary from it.
    let made = dictionary().expect("no dictionary from three nights of mail");
    let next = night(180..240);
    let repo = Repository::open(&repo_path).unwrap();
    for m in &next {
        let location = repo.location(&MessageHash::of(m)).unwrap();
        assert_eq!(location.entry.dict, Some(made));
    }
    for m in all.iter().chain(&next) {
        assert_eq!(&repo.read_message(&MessageHash::of(m)).unwrap(), m);
    }
}

/// A mailing-list thread: every message adds a paragraph of its own and quotes the one before,
/// as replies do; message `n` of `thread`.
fn thread_mail(thread: &[Vec<u8>]) -> Vec<u8> {
    let n = thread.len() as u64;
    let mut text = format!(
        "From: member{}@lists.example.org\r\nSubject: Re: the plan, part {n}\r\n\r\n",
        n % 11
    );
    // Words no vocabulary predicts: only the quoting repeats them.
    add_words(&mut text, n.wrapping_mul(0x2545_F491_4F6C_DD1D), 200, |x| {
        format!("w{:x}", x % 100_000)
    });
    if let Some(previous) = thread.last() {
        let body = previous.split(|&b| b == b'\n').skip(3).take(17);
        for line in body {
            text.push_str("> ");
            text.push_str(std::str::from_utf8(line).unwrap().trim_end());
            text.push_str("\r\n");
        }
    }
    text.into_bytes()
}

#[test]
fn mail_that_quotes_earlier_mail_gets_a_dictionary_of_that_mail_which_zstd_reads() {
    let dir = tempfile::tempdir().unwrap();
    let repo_path = dir.path().join("r");
    let mut writer = Repository::init(&repo_path).unwrap().lock("test").unwrap();
    let mut thread: Vec<Vec<u8>> = Vec::new();
    for _ in 0..400 {
        let m = thread_mail(&thread);
        writer.store_bytes(&m).unwrap();
        thread.push(m);
    }
    writer.finish().unwrap();

    // The dictionary of recent mail won: it holds the sampled messages themselves, the last
    // sampled one at its end — something zstd's trainer, which keeps only recurring pieces of
    // at most 256 KiB, would not make.
    let repo = Repository::open(&repo_path).unwrap();
    let dict = repo.config().compression.dictionary.unwrap();
    let bytes = &repo.dictionary(&dict).unwrap().bytes;
    assert!(
        bytes.len() > 256 * 1024,
        "{} bytes: the trained dictionary was kept",
        bytes.len()
    );
    let sampled = popbackup::repo::TRAIN_AFTER_MESSAGES;
    assert!(bytes.ends_with(&thread[sampled - 1]));
    for m in &thread {
        assert_eq!(&repo.read_message(&MessageHash::of(m)).unwrap(), m);
    }
    let late = repo.location(&MessageHash::of(&thread[350])).unwrap();
    assert_eq!(late.entry.dict, Some(dict));

    // docs/FORMAT.md's recipe: the file decompresses to the dictionary its name is the SHA-256
    // of, and zstd decodes a frame with it.
    let script = r#"
set -eu
cd "$1"
zstd -dq "dicts/$2.zdict.zst" -o "$5/d.zdict"
echo "$2  $5/d.zdict" | sha256sum -c --quiet
tail -c +$(($4 + 1)) "packs/$3.tar" | head -c "$6" | zstd -dq -D "$5/d.zdict" > "$5/out.eml"
"#;
    let status = Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg("script")
        .arg(&repo_path)
        .arg(dict.to_string())
        .arg(late.pack.to_string())
        .arg(late.entry.offset.to_string())
        .arg(dir.path())
        .arg(late.entry.length.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "zstd could not read the dictionary");
    assert_eq!(
        std::fs::read(dir.path().join("out.eml")).unwrap(),
        thread[350]
    );

    // A damaged dictionary file is set aside, not used: the repository still opens, the
    // messages that need it say so, and verify reports the file.
    flip_middle_byte(&repo_path.join(format!("dicts/{dict}.zdict.zst")));
    let repo = Repository::open(&repo_path).unwrap();
    assert_eq!(repo.damaged_dictionaries().len(), 1);
    let err = repo
        .read_message(&MessageHash::of(&thread[350]))
        .unwrap_err();
    assert!(err.to_string().contains("missing or damaged"), "{err}");
    let report = verify(&repo, popbackup::verify::DataCheck::Full);
    assert!(!report.clean);
    assert_eq!(report.damaged_dictionaries.len(), 1, "{report:?}");
    assert!(report.damaged_dictionaries[0].starts_with(&format!("dicts/{dict}.zdict.zst: ")));
    // No snapshot refers to the messages here: the pack reports them as lost.
    assert!(
        report
            .damaged_packs
            .iter()
            .any(|p| p.lost.contains(&MessageHash::of(&thread[350]))),
        "{report:?}"
    );
}

#[test]
fn standard_tools_read_the_repository() {
    // docs/FORMAT.md's promise: tar, zstd and a JSON reader are enough.
    let dir = tempfile::tempdir().unwrap();
    let mut writer = Repository::init(dir.path()).unwrap().lock("test").unwrap();
    let message =
        b"From: a@example.org\r\nSubject: tools\r\n\r\n.line with dot\r\nNUL \0 and \xff\r\n";
    let stored = writer.store_bytes(message).unwrap();
    let manifest = manifest_for(writer.repo(), "tools", &[(stored.hash(), stored.raw_len())]);
    writer.commit(&manifest).unwrap();
    drop(writer);
    let script = r#"
set -eu
cd "$1"
snap=$(ls snapshots | head -n1)
# The manifest names its records files, each named by its SHA-256; the first holds the first
# record.
for r in $(zstd -dc "snapshots/$snap" | python3 -c 'import json,sys; print(*json.load(sys.stdin)["records"])'); do
  echo "$r  records/$r.json.zst" | sha256sum -c --quiet
done
records=$(zstd -dc "snapshots/$snap" | python3 -c 'import json,sys; print(json.load(sys.stdin)["records"][0])')
field() { zstd -dc "records/$records.json.zst" | python3 -c 'import json,sys; m=json.load(sys.stdin); print(m[0][sys.argv[1]])' "$1"; }
hash=$(field sha256)
pack=$(field pack); offset=$(field offset); length=$(field length)
test "$(tar -tf "packs/$pack.tar" | tr '\n' ' ')" = "messages.zst messages.json.zst "
# One message: its frame, cut out by offset and length.
tail -c +$((offset + 1)) "packs/$pack.tar" | head -c "$length" | zstd -dq > "$2"
echo "$hash  $2" | sha256sum -c --quiet
# Every message of the pack at once, and the table naming it.
tar -xOf "packs/$pack.tar" messages.zst | zstd -dq | cmp - "$2"
tar -xOf "packs/$pack.tar" messages.json.zst | zstd -dc | python3 -c 'import json,sys; t=json.load(sys.stdin); assert t["messages"][0]["hash"] == sys.argv[1]' "$hash"
"#;
    let out_file = dir.path().join("out.eml");
    let status = Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg("script")
        .arg(dir.path())
        .arg(&out_file)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "tar/zstd/sha256sum could not read the repository"
    );
    assert_eq!(std::fs::read(&out_file).unwrap(), message);
}

// ---- Crash safety: a child writes batches in a loop and is killed with SIGKILL ----

const CHILD_ENV: &str = "POPBACKUP_TEST_CRASH_CHILD";

/// Starts this test binary again as a writer child (see `crash_child_main`).
fn crash_child(repo: &Path, seed: u64) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "repo::crash_child_main",
            "--nocapture",
            "--include-ignored",
        ])
        .env(CHILD_ENV, repo)
        .env("POPBACKUP_TEST_CRASH_SEED", seed.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

fn wait_for_progress(repo: &Path) {
    for _ in 0..500 {
        if std::fs::metadata(repo.join("lock"))
            .map(|m| m.len() > 0)
            .unwrap_or(false)
        {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("the child never took the lock");
}

/// Deterministic message `n` of a run: varied sizes, some duplicates across batches.
fn crash_message(n: u64) -> Vec<u8> {
    let body = format!("line {n} of a message that is long enough to compress\r\n")
        .repeat((n % 97) as usize * 3 + 1);
    format!(
        "Message-ID: <{}@crash.test>\r\nSubject: crash {n}\r\n\r\n{body}",
        n % 400
    )
    .into_bytes()
}

/// The child: commits snapshots of batches of messages, forever, checkpointing in between.
#[test]
#[ignore = "run as a child process by the crash test"]
fn crash_child_main() {
    let Some(root) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let seed: u64 = std::env::var("POPBACKUP_TEST_CRASH_SEED")
        .unwrap()
        .parse()
        .unwrap();
    let mut writer = Repository::open(Path::new(&root))
        .unwrap()
        .lock("crash-test")
        .unwrap();
    let mut n = seed * 1_000_000;
    loop {
        let mut batch = Vec::new();
        for _ in 0..20 {
            let m = crash_message(n);
            n += 1;
            let s = writer.store_bytes(&m).unwrap();
            batch.push((s.hash(), s.raw_len()));
        }
        let manifest = manifest_for(writer.repo(), "crash", &batch);
        writer.checkpoint(&manifest).unwrap();
        let manifest = manifest_for(writer.repo(), "crash", &batch);
        writer.commit(&manifest).unwrap();
    }
}

#[test]
fn sigkill_at_random_moments_never_damages_committed_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    Repository::init(dir.path()).unwrap();
    let mut rng = 0x2545F4914F6CDD1Du64;
    let kills = 60;
    let mut committed_total = 0;
    for round in 0..kills {
        let mut child = crash_child(dir.path(), round + 1);
        wait_for_progress(dir.path());
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(std::time::Duration::from_millis(5 + rng % 120));
        child.kill().unwrap();
        child.wait().unwrap();

        // After every kill: the repository opens, every committed manifest is complete and
        // readable, every message it names is stored and matches its hash.
        let repo = Repository::open(dir.path()).unwrap();
        let ids = repo.snapshots().unwrap();
        for id in &ids {
            let manifest = repo.manifest(id).unwrap();
            assert!(manifest.complete);
            for record in &manifest.messages {
                let hash = record.sha256.unwrap();
                let bytes = repo
                    .read_message(&hash)
                    .unwrap_or_else(|e| panic!("round {round}: {e}"));
                assert_eq!(bytes.len() as u64, record.size.unwrap());
            }
        }
        committed_total = ids.len();
    }
    assert!(
        committed_total > 0,
        "no snapshot was ever committed: the kills came too early"
    );
    // A writer can still take over and clean up the crashed writers' temporary files.
    drop(Repository::open(dir.path()).unwrap().lock("test").unwrap());
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
}

/// Committed snapshots keep their message list in records files named by their hashes: equal
/// lists share their files, a damaged or missing one makes the snapshot unreadable (never
/// empty), and prune removes a file only when no snapshot names it any more.
#[test]
fn snapshots_share_records_files_and_prune_removes_unnamed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = Repository::init(dir.path()).unwrap().lock("test").unwrap();
    let messages = numbered_messages(20);
    let stored = store_all(&mut writer, &messages);
    writer.flush().unwrap();
    let mut first = manifest_for(writer.repo(), "a", &stored);
    first.id = SnapshotId::new(chrono::Utc::now() - chrono::Duration::seconds(20));
    let mut second = manifest_for(writer.repo(), "a", &stored);
    second.id = SnapshotId::new(chrono::Utc::now() - chrono::Duration::seconds(10));
    let third = manifest_for(writer.repo(), "a", &stored[..5]);
    for m in [&first, &second, &third] {
        writer.commit(m).unwrap();
    }
    let repo = writer.finish().unwrap();
    let records_dir = dir.path().join("records");
    let files = || -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(&records_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    };
    assert_eq!(files().len(), 2, "two distinct lists, two files");
    // `popbackup snapshots` counts each list (read once for both snapshots sharing it).
    let summaries = repo.summaries().unwrap();
    let counts: Vec<(usize, u64)> = summaries.iter().map(|s| (s.messages, s.bytes)).collect();
    let bytes = |n: usize| stored[..n].iter().map(|(_, len)| len).sum::<u64>();
    assert_eq!(
        counts,
        vec![(20, bytes(20)), (20, bytes(20)), (5, bytes(5))]
    );
    let heads: Vec<Manifest> = [&first, &second, &third]
        .iter()
        .map(|m| repo.manifest_head(&m.id).unwrap())
        .collect();
    assert!(heads.iter().all(|h| h.messages.is_empty()));
    assert_eq!(heads[0].records, heads[1].records);
    assert_ne!(heads[0].records, heads[2].records);
    let shared = heads[0].records.clone().unwrap();
    assert_eq!(shared.0.len(), 1, "a list of 20 records is one run here");
    let shared = shared.0[0];
    // The file is named by its SHA-256, and holds the records (plain `zstd -d` and JSON).
    let path = records_dir.join(format!("{shared}.json.zst"));
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(popbackup::repo::RecordsId::of(&bytes), shared);
    let json = zstd::decode_all(&bytes[..]).unwrap();
    let list: Vec<MessageRecord> = serde_json::from_slice(&json).unwrap();
    assert_eq!(list.len(), 20);
    for m in [&first, &second] {
        let back = repo.manifest(&m.id).unwrap();
        assert_eq!(back.messages.len(), 20);
        let hashes: Vec<_> = back.messages.iter().map(|r| r.sha256.unwrap()).collect();
        let want: Vec<_> = stored.iter().map(|(h, _)| *h).collect();
        assert_eq!(hashes, want);
        assert!(back.messages.iter().all(|r| r.pack.is_some()));
    }

    // One flipped byte: both snapshots that share the list are damaged, not empty.
    flip_middle_byte(&path);
    let err = repo.manifest(&first.id).unwrap_err();
    assert!(matches!(err, RepoError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("damaged"), "{err}");
    let report = verify(&repo, popbackup::verify::DataCheck::Quick);
    assert!(!report.clean);
    let damaged_ids: Vec<_> = report
        .damaged_snapshots
        .iter()
        .map(|d| d.snapshot.clone())
        .collect();
    assert_eq!(damaged_ids, vec![first.id.clone(), second.id.clone()]);
    std::fs::remove_file(&path).unwrap();
    let err = repo.manifest(&second.id).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
    // The advice ("forget the snapshot") can be followed: forget needs only the heads.
    let policy = popbackup::retention::KeepPolicy {
        last: 1,
        ..Default::default()
    };
    let plan = popbackup::retention::plan_forget(&repo, &policy, None, &chrono::Utc).unwrap();
    let mut gone: Vec<_> = plan.removed().map(|d| d.snapshot.clone()).collect();
    gone.sort();
    assert_eq!(gone, vec![first.id.clone(), second.id.clone()]);
    std::fs::write(&path, &bytes).unwrap();

    // Forget the first: its list stays (the second names it). Forget the second: prune
    // removes the list, and the third's stays.
    let mut writer = repo.lock("test").unwrap();
    writer.remove_snapshot(&first.id).unwrap();
    let plan = popbackup::retention::plan_prune(writer.repo(), 100.0).unwrap();
    assert!(plan.unused_records.is_empty());
    popbackup::retention::prune(&mut writer, plan).unwrap();
    assert_eq!(files().len(), 2);
    writer.remove_snapshot(&second.id).unwrap();
    let plan = popbackup::retention::plan_prune(writer.repo(), 100.0).unwrap();
    assert_eq!(plan.unused_records, vec![shared]);
    popbackup::retention::prune(&mut writer, plan).unwrap();
    let left = files();
    assert_eq!(left.len(), 1);
    assert_eq!(writer.repo().manifest(&third.id).unwrap().messages.len(), 5);
}

/// Damages a file the way a bad sector would: one byte in its middle changed.
fn flip_middle_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(path, &bytes).unwrap();
}

fn verify(
    repo: &Repository,
    data: popbackup::verify::DataCheck,
) -> popbackup::verify::VerifyReport {
    popbackup::verify::verify(repo, popbackup::verify::VerifyOptions { data, threads: 0 }).unwrap()
}

/// `count` tiny messages, each different ("Subject: N", "body N").
fn numbered_messages(count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| format!("Subject: {i}\r\n\r\nbody {i}\r\n").into_bytes())
        .collect()
}

/// Stores every message; their hashes and sizes, for a manifest.
fn store_all(
    writer: &mut popbackup::repo::RepoWriter,
    messages: &[Vec<u8>],
) -> Vec<(MessageHash, u64)> {
    messages
        .iter()
        .map(|m| {
            let s = writer.store_bytes(m).unwrap();
            (s.hash(), s.raw_len())
        })
        .collect()
}

/// The bytes in `records/`: how many files, how many bytes.
fn records_usage(repo: &Path) -> (usize, u64) {
    let files: Vec<_> = std::fs::read_dir(repo.join("records"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .collect();
    (files.len(), files.iter().sum())
}

/// A snapshot's records are cut into runs where the records say, so a nightly snapshot names
/// the files of the runs that did not change. Here the server deleted its 30 oldest messages
/// (every later message number moved) and 20 arrived: the new snapshot adds the runs at both
/// ends, not its whole list. Both lists read back exactly, message numbers included, and so
/// does a list whose numbers are not positions (a server that skips numbers).
#[test]
fn a_nightly_snapshot_adds_only_the_runs_that_changed() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = Repository::init(dir.path()).unwrap().lock("test").unwrap();
    let messages = numbered_messages(3020);
    let stored = store_all(&mut writer, &messages);
    writer.flush().unwrap();
    let start = chrono::Utc::now() - chrono::Duration::seconds(60);
    let snapshot = |writer: &popbackup::repo::RepoWriter, range: std::ops::Range<usize>, n| {
        let mut m = manifest_for(writer.repo(), "a", &stored[range.clone()]);
        for (record, k) in m.messages.iter_mut().zip(range) {
            record.uidl = Some(format!("uid-{k}"));
        }
        m.id = SnapshotId::new(start + chrono::Duration::seconds(n));
        m
    };
    let first = snapshot(&writer, 0..3000, 1);
    writer.commit(&first).unwrap();
    let (files_first, bytes_first) = records_usage(dir.path());
    assert!(files_first > 5, "3,000 records make several runs");

    let second = snapshot(&writer, 30..3020, 2);
    assert_eq!(second.messages[0].msg, 1, "the server renumbered");
    writer.commit(&second).unwrap();
    let (files_second, bytes_second) = records_usage(dir.path());
    assert!(
        files_second - files_first <= 3,
        "{files_first} files, then {files_second}"
    );
    assert!(
        (bytes_second - bytes_first) * 4 < bytes_first,
        "{bytes_first} bytes, then {bytes_second}"
    );

    let mut third = snapshot(&writer, 0..40, 3);
    for (i, record) in third.messages.iter_mut().enumerate() {
        record.msg = 2 * i as u32 + 1;
    }
    writer.commit(&third).unwrap();
    let repo = writer.finish().unwrap();
    for m in [&first, &second, &third] {
        let back = repo.manifest(&m.id).unwrap();
        assert_eq!(back.messages, m.messages);
        // And one records file at a time, as restore and ls read them.
        let head = repo.manifest_head(&m.id).unwrap();
        let files = head.records.as_ref().unwrap().0.len();
        assert!(head.messages.is_empty() && (files > 1 || m.messages.len() < 100));
        assert_eq!(streamed_records(&repo, &m.id), m.messages);
    }
    assert!(verify(&repo, popbackup::verify::DataCheck::Quick).clean);
    // `popbackup snapshots` counts every run of each list.
    let counts: Vec<usize> = repo
        .summaries()
        .unwrap()
        .iter()
        .map(|s| s.messages)
        .collect();
    assert_eq!(counts, vec![3000, 2990, 40]);

    // A damaged run damages exactly the snapshots that name it: here one only the second
    // names, then one both name (each is checked once, but reported for every snapshot).
    let head = |m: &Manifest| repo.manifest_head(&m.id).unwrap().records.unwrap().0;
    let (first_runs, second_runs) = (head(&first), head(&second));
    let damaged = |ids: &[&SnapshotId]| {
        let report = verify(&repo, popbackup::verify::DataCheck::Quick);
        assert!(!report.clean);
        let found: Vec<&SnapshotId> = report
            .damaged_snapshots
            .iter()
            .map(|d| &d.snapshot)
            .collect();
        assert_eq!(found, ids);
    };
    let only_second = second_runs
        .iter()
        .find(|r| !first_runs.contains(r))
        .unwrap();
    let path = |r: &popbackup::repo::RecordsId| dir.path().join(format!("records/{r}.json.zst"));
    let saved = std::fs::read(path(only_second)).unwrap();
    flip_middle_byte(&path(only_second));
    damaged(&[&second.id]);
    std::fs::write(path(only_second), saved).unwrap();
    let both = second_runs.iter().find(|r| first_runs.contains(r)).unwrap();
    flip_middle_byte(&path(both));
    damaged(&[&first.id, &second.id]);
}

/// A format-4 repository (its manifests name one records file, as a string, whose records
/// carry their numbers) reads back as it was, and a writer marks it format 5 before it
/// writes, so that a popbackup of format 4 then refuses it instead of misreading it.
#[test]
fn a_format_4_repository_is_read_and_upgraded() {
    use popbackup::repo::format::PLAIN_FORMAT_VERSION;
    let dir = tempfile::tempdir().unwrap();
    let mut writer = Repository::init(dir.path()).unwrap().lock("test").unwrap();
    let messages = numbered_messages(600);
    let stored = store_all(&mut writer, &messages);
    writer.flush().unwrap();
    let mut old = manifest_for(writer.repo(), "a", &stored);
    old.id = SnapshotId::new(chrono::Utc::now() - chrono::Duration::seconds(10));
    writer.commit(&old).unwrap();
    drop(writer);

    // Rewrite it as format 4 wrote it.
    let root = dir.path();
    let head_path = root.join(format!("snapshots/{}.json.zst", old.id));
    let mut head: serde_json::Value =
        serde_json::from_slice(&zstd::decode_all(&std::fs::read(&head_path).unwrap()[..]).unwrap())
            .unwrap();
    let mut lines = Vec::new();
    for name in head["records"].as_array().unwrap() {
        let path = root.join(format!("records/{}.json.zst", name.as_str().unwrap()));
        let file = zstd::decode_all(&std::fs::read(&path).unwrap()[..]).unwrap();
        for mut record in serde_json::from_slice::<Vec<serde_json::Value>>(&file).unwrap() {
            record["msg"] = (lines.len() + 1).into();
            lines.push(serde_json::to_string(&record).unwrap());
        }
        std::fs::remove_file(&path).unwrap();
    }
    assert_eq!(lines.len(), 600);
    let whole = zstd::encode_all(format!("[\n{}\n]", lines.join(",\n")).as_bytes(), 1).unwrap();
    let id = popbackup::repo::RecordsId::of(&whole);
    std::fs::write(root.join(format!("records/{id}.json.zst")), &whole).unwrap();
    head["records"] = id.to_string().into();
    head["version"] = 2.into();
    let head_bytes = zstd::encode_all(&serde_json::to_vec(&head).unwrap()[..], 1).unwrap();
    std::fs::write(&head_path, head_bytes).unwrap();
    let config_path = root.join("config.json");
    let v = |n: u32| format!("\"version\": {n}");
    let config = std::fs::read_to_string(&config_path).unwrap();
    assert!(config.contains(&v(PLAIN_FORMAT_VERSION)), "{config}");
    std::fs::write(
        &config_path,
        config.replace(&v(PLAIN_FORMAT_VERSION), &v(4)),
    )
    .unwrap();

    let repo = Repository::open(root).unwrap();
    assert_eq!(repo.manifest(&old.id).unwrap().messages, old.messages);
    assert_eq!(
        streamed_records(&repo, &old.id),
        old.messages,
        "a format-4 list, one file"
    );
    assert!(verify(&repo, popbackup::verify::DataCheck::Quick).clean);
    let mut writer = repo.lock("test").unwrap();
    let config = std::fs::read_to_string(&config_path).unwrap();
    assert!(config.contains(&v(PLAIN_FORMAT_VERSION)), "{config}");
    let new = manifest_for(writer.repo(), "a", &stored[..10]);
    writer.commit(&new).unwrap();
    let repo = writer.finish().unwrap();
    assert_eq!(repo.manifest(&old.id).unwrap().messages, old.messages);
    assert_eq!(repo.manifest(&new.id).unwrap().messages, new.messages);
}

/// A checkpoint names records files (format 6); one of format 5, which kept its records
/// inline, reads back the same.
#[test]
fn a_checkpoint_reads_back_from_its_records_files_or_inline() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = Repository::init(dir.path()).unwrap().lock("test").unwrap();
    let messages = numbered_messages(600);
    let stored = store_all(&mut writer, &messages);
    writer.flush().unwrap();
    let run = manifest_for(writer.repo(), "a", &stored);
    writer.checkpoint(&run).unwrap();
    drop(writer);
    let root = dir.path();
    let path = root.join(format!("checkpoints/{}.json.zst", run.id));
    let mut head: serde_json::Value =
        serde_json::from_slice(&zstd::decode_all(&std::fs::read(&path).unwrap()[..]).unwrap())
            .unwrap();
    assert!(head.get("messages").is_none());
    let names = head["records"].as_array().unwrap().clone();
    assert!(names.len() > 1, "600 records make several files");
    let repo = Repository::open(root).unwrap();
    let checkpoints = repo.checkpoints().unwrap();
    assert_eq!(checkpoints.len(), 1);
    assert_eq!(checkpoints[0].messages, run.messages);
    assert!(!checkpoints[0].complete);

    // As format 5 wrote it.
    let mut inline = Vec::new();
    for name in &names {
        let file = root.join(format!("records/{}.json.zst", name.as_str().unwrap()));
        let file = zstd::decode_all(&std::fs::read(&file).unwrap()[..]).unwrap();
        for mut record in serde_json::from_slice::<Vec<serde_json::Value>>(&file).unwrap() {
            record["msg"] = (inline.len() + 1).into();
            inline.push(record);
        }
    }
    head.as_object_mut().unwrap().remove("records");
    head["messages"] = inline.into();
    let bytes = zstd::encode_all(&serde_json::to_vec(&head).unwrap()[..], 1).unwrap();
    std::fs::write(&path, bytes).unwrap();
    let checkpoints = Repository::open(root).unwrap().checkpoints().unwrap();
    assert_eq!(checkpoints[0].messages, run.messages);
}

/// A checkpoint writes the open run of its list as a file of its own; when the commit cuts the
/// list differently, nothing names that file, and closing the writer removes it. Files a
/// checkpoint still there names, and those of committed lists, stay.
#[test]
fn closing_removes_the_files_made_for_checkpoints_that_no_list_names() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = Repository::init(dir.path()).unwrap().lock("test").unwrap();
    let messages = numbered_messages(600);
    let stored = store_all(&mut writer, &messages);
    writer.flush().unwrap();
    let files = || -> BTreeSet<RecordsId> {
        Repository::open(dir.path())
            .unwrap()
            .records_files()
            .unwrap()
            .into_iter()
            .collect()
    };
    let all = manifest_for(writer.repo(), "a", &stored);
    let mut part = all.clone();
    part.messages.truncate(299);
    writer.checkpoint(&part).unwrap();
    let after_checkpoint = files();
    let mut other = manifest_for(writer.repo(), "b", &stored[..100]);
    other.id = SnapshotId::new(chrono::Utc::now() - chrono::Duration::seconds(10));
    writer.checkpoint(&other).unwrap();
    writer.commit(&all).unwrap();
    writer.close().unwrap();

    let repo = Repository::open(dir.path()).unwrap();
    let mut named: BTreeSet<RecordsId> = BTreeSet::new();
    named.extend(repo.manifest_head(&all.id).unwrap().records.unwrap().0);
    let checkpoints = repo.checkpoints().unwrap();
    assert_eq!(checkpoints.len(), 1, "b's run is still unfinished");
    assert_eq!(checkpoints[0].messages, other.messages);
    named.extend(checkpoints[0].records.clone().unwrap().0);
    assert_eq!(files(), named, "what a list names, no more");
    assert!(
        !after_checkpoint.is_subset(&named),
        "the open run of a's checkpoint was a file of its own, and it is gone"
    );
    assert_eq!(repo.manifest(&all.id).unwrap().messages, all.messages);
    assert!(verify(&repo, popbackup::verify::DataCheck::Quick).clean);
}

/// While a writer samples small messages for a dictionary, a message too large to be sampled
/// still gets a plan, so the storing workers compress it outside the writer's lock (before,
/// a repository that never got a dictionary compressed everything under it, one message at a
/// time). The large frames stored that way come through the pack rewrite that training does.
#[test]
fn large_messages_are_compressed_outside_the_lock_while_sampling() {
    use popbackup::repo::{DICTIONARY_MAX_MESSAGE, FrameCompressor, TRAIN_AFTER_MESSAGES};
    let dir = tempfile::tempdir().unwrap();
    let mut writer = Repository::init(dir.path()).unwrap().lock("test").unwrap();
    assert!(
        writer.frame_plan(2_000, None).is_none(),
        "a small message is stored where the sample is"
    );
    let mut compressor = FrameCompressor::new(true);
    let mut small = Vec::new();
    let mut large = Vec::new();
    for n in 0..TRAIN_AFTER_MESSAGES as u64 + 20 {
        let message = mail_of_kind(KIND_A, n);
        writer.store_bytes(&message).unwrap();
        small.push(message);
        if n % 60 == 0 {
            let mut message = Vec::new();
            while message.len() <= DICTIONARY_MAX_MESSAGE {
                message.extend(mail_of_kind(KIND_B, 1000 + n + message.len() as u64));
            }
            let sampling = writer.repo().config().compression.dictionary.is_none();
            let plan = writer.frame_plan(message.len(), None);
            assert!(plan.is_some(), "message {n}: a large message has a plan");
            let plan = plan.unwrap();
            assert_eq!(plan.dict, None);
            let frame = compressor.compress(&message, plan, |_| None).unwrap();
            let hash = MessageHash::of(&message);
            let stored = writer
                .store_frame(hash, message.len() as u64, &frame, plan)
                .unwrap();
            assert!(matches!(stored, Stored::New(..)), "sampling: {sampling}");
            large.push(message);
        }
    }
    assert!(
        writer.repo().config().compression.dictionary.is_some(),
        "the sample was trained, and the pack rewritten"
    );
    assert_eq!(large.len(), 6);
    let repo = writer.finish().unwrap();
    for m in small.iter().chain(&large) {
        assert_eq!(&repo.read_message(&MessageHash::of(m)).unwrap(), m);
    }
    assert!(verify(&repo, popbackup::verify::DataCheck::Full).clean);
}

/// A snapshot's records as `Repository::for_each_record` hands them over, one file at a time.
fn streamed_records(repo: &Repository, id: &SnapshotId) -> Vec<popbackup::repo::MessageRecord> {
    let mut head = repo.manifest_head(id).unwrap();
    let mut records = Vec::new();
    repo.for_each_record(&mut head, |r| records.push(r))
        .unwrap();
    records
}
