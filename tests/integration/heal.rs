//! The archive heals: a byte flipped in a pack is found by `verify` (65), `forget` and `prune`
//! refuse to run on it, the next `snapshot` downloads the damaged message again from the
//! server that still has it and retires the damaged pack, and then `verify` is clean and a
//! restore gives back every message byte for byte — checked against the real Dovecot.

use std::collections::BTreeMap;

use popbackup::repo::{MessageHash, RepoPassword, Repository};

use crate::snapshot::{REPO_PASSWORD, Setup, counter, stderr};
use crate::support::corpus_messages;
use crate::support::dovecot::{Dovecot, dovecot_retr_bytes};

#[test]
fn a_flipped_byte_is_healed_by_the_next_snapshot() {
    heals("u34", "");
}

/// The same in an encrypted repository, where pack tables, the index and the verification
/// record name messages by their keyed names and the records by their SHA-256.
#[test]
fn a_flipped_byte_is_healed_in_an_encrypted_repository_too() {
    heals("u60", "repository_password_env = \"REPO_PW\"\n");
}

fn heals(user: &str, extra: &str) {
    let Some(dovecot) = Dovecot::get() else {
        return;
    };
    let Some(corpus) = corpus_messages() else {
        return;
    };
    let mail: Vec<&(String, Vec<u8>)> = corpus.iter().step_by(20).take(60).collect();
    dovecot.fill_maildir(
        user,
        mail.iter()
            .enumerate()
            .map(|(i, (_, bytes))| (format!("{i:03}"), bytes.as_slice())),
    );
    let setup = Setup::new(&dovecot, &[("home", user)], extra);
    let open = || Repository::open_with(&setup.repo, &RepoPassword::given(REPO_PASSWORD)).unwrap();
    let first = setup.json(&["snapshot"], 0);
    assert_eq!(first["accounts"][0]["downloaded"], mail.len());

    // Flip a byte in the middle of one message's frame. `hash` is the name it is stored
    // under, which is what verify and repair report.
    let repo = open();
    let (hash, location) = repo
        .index()
        .messages()
        .max_by_key(|(_, l)| l.entry.length)
        .map(|(h, l)| (*h, l))
        .unwrap();
    let pack = crate::support::files::pack(repo.storage().local_path().unwrap(), &location.pack);
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[(location.entry.offset + location.entry.length / 2) as usize] ^= 0x55;
    std::fs::write(&pack, bytes).unwrap();

    let report = setup.json(&["verify"], 65);
    let damaged: Vec<&str> = report["damaged_messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["hash"].as_str().unwrap())
        .collect();
    assert_eq!(damaged, [hash.to_hex()], "{report}");

    // Retention refuses to decide from a damaged archive, and says how to heal it.
    for args in [&["prune"][..], &["forget", "--keep-last", "1"]] {
        let out = setup.run(args);
        assert_eq!(out.status.code(), Some(65), "{args:?}: {}", stderr(&out));
        let text = stderr(&out);
        assert!(
            text.contains("popbackup snapshot") && text.contains("--force"),
            "{text}"
        );
    }

    // The next snapshot downloads exactly the damaged message again and retires its pack.
    let logouts_before = dovecot.logouts(user).len();
    let healing = setup.json(&["snapshot"], 0);
    assert_eq!(healing["accounts"][0]["downloaded"], 1, "{healing}");
    assert_eq!(
        healing["repair"]["healed"],
        serde_json::json!([hash.to_hex()]),
        "{healing}"
    );
    assert_eq!(
        healing["repair"]["retired_packs"],
        serde_json::json!([location.pack.to_hex()])
    );
    let logouts = dovecot.wait_logouts(user, logouts_before + 1);
    let last = logouts.last().unwrap();
    assert_eq!(counter(last, "retr"), 1, "{last}");
    assert_eq!(counter(last, "del"), 0, "{last}");
    assert!(!pack.exists(), "the damaged pack is gone");

    let report = setup.json(&["verify"], 0);
    assert_eq!(report["clean"], true, "{report}");
    let state = open().verified_state().unwrap();
    assert!(!state.has_damage(), "{state:?}");

    // Every message restores byte for byte (CRLF kept: the archived bytes).
    let restored = setup.dir.path().join("restored");
    let to = format!("maildir:{}", restored.display());
    let out = setup.run(&["restore", "--crlf", "--to", &to]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut got: BTreeMap<MessageHash, usize> = BTreeMap::new();
    for entry in std::fs::read_dir(restored.join("new")).unwrap() {
        *got.entry(MessageHash::of(
            &std::fs::read(entry.unwrap().path()).unwrap(),
        ))
        .or_default() += 1;
    }
    let mut want: BTreeMap<MessageHash, usize> = BTreeMap::new();
    for (_, bytes) in &mail {
        *want
            .entry(MessageHash::of(&dovecot_retr_bytes(bytes)))
            .or_default() += 1;
    }
    // A restore writes each distinct message once per snapshot record.
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    assert!(got.keys().any(|h| repo.stored_name(h) == hash));
    drop(repo);

    // Healed, retention runs again; and the next night has nothing to do.
    let out = setup.run(&["prune"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let night = setup.json(&["snapshot"], 0);
    assert_eq!(night["accounts"][0]["downloaded"], 0, "{night}");
}
