//! `popbackup verify`: proves the repository intact, or names exactly what is damaged.
//!
//! Structure: the configuration, every manifest, every pack's tar structure, the index files
//! against the packs, and every message a manifest refers to present in some pack. Data (by
//! default, or for a subset of packs): every pack read once, sequentially, its SHA-256 compared
//! with its name and every frame decompressed and re-hashed; packs are spread over the cores.
//! The [`VerifyReport`] lists each damaged or missing message with every snapshot record that
//! refers to it, each damaged pack with the messages still readable from it, and stray files
//! (not damage). Verify never repairs and never prints; it returns the report, and
//! [`record`] stores which packs and snapshots were found intact (`verified.json`).

mod index;
pub mod pack;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

pub use pack::{EntryState, PackCheck, check_pack};

use crate::repo::{
    MessageHash, PackId, RepoError, RepoWriter, Repository, SnapshotId, VerifiedState,
};
use index::IndexClaims;

/// How much data to read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DataCheck {
    /// Every pack read and every message re-hashed.
    Full,
    /// Structure only: no message data is read.
    Quick,
    /// Part `k` of `t` (1-based): over runs 1/t … t/t every pack is read once.
    Part { k: u32, t: u32 },
    /// About this percentage of the packs, chosen at random.
    Percent(f64),
}

impl DataCheck {
    /// Parses `--read-data-subset`: `N%` or `K/T`.
    pub fn parse_subset(text: &str) -> Result<DataCheck, String> {
        let t = text.trim();
        if let Some(p) = t.strip_suffix('%') {
            let percent: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("{text:?}: expected a percentage like 10%"))?;
            if !(percent > 0.0 && percent <= 100.0) {
                return Err(format!(
                    "{text:?}: the percentage must be above 0 and at most 100"
                ));
            }
            return Ok(DataCheck::Percent(percent));
        }
        if let Some((k, n)) = t.split_once('/') {
            let k: u32 = k
                .trim()
                .parse()
                .map_err(|_| format!("{text:?}: expected K/T like 1/5"))?;
            let n: u32 = n
                .trim()
                .parse()
                .map_err(|_| format!("{text:?}: expected K/T like 1/5"))?;
            if n == 0 || k == 0 || k > n {
                return Err(format!("{text:?}: K/T needs 1 <= K <= T"));
            }
            return Ok(DataCheck::Part { k, t: n });
        }
        Err(format!("{text:?}: give N% or K/T (like 10% or 2/7)"))
    }

    fn describe(&self) -> String {
        match self {
            DataCheck::Full => "full".into(),
            DataCheck::Quick => "quick (structure only)".into(),
            DataCheck::Part { k, t } => format!("data subset {k}/{t}"),
            DataCheck::Percent(p) => format!("data subset {p}%"),
        }
    }

    /// Whether this run reads the data of `pack`.
    fn reads(&self, pack: &PackId, seed: u64) -> bool {
        let n = u64::from_be_bytes([
            pack.0[0], pack.0[1], pack.0[2], pack.0[3], pack.0[4], pack.0[5], pack.0[6], pack.0[7],
        ]);
        match *self {
            DataCheck::Full => true,
            DataCheck::Quick => false,
            DataCheck::Part { k, t } => n % u64::from(t) == u64::from(k - 1),
            DataCheck::Percent(p) => ((n ^ seed) % 10_000) as f64 <= p * 100.0 - 1.0,
        }
    }
}

/// One snapshot record that refers to a message.
#[derive(Debug, Clone, Serialize)]
pub struct Reference {
    pub snapshot: SnapshotId,
    pub account: String,
    pub uidl: Option<String>,
    pub date: Option<String>,
    pub from: Option<String>,
    pub subject: Option<String>,
}

/// A message some snapshot needs that cannot be read back intact.
#[derive(Debug, Clone, Serialize)]
pub struct DamagedMessage {
    pub hash: MessageHash,
    /// `missing` (in no pack) or what is wrong with its copy.
    pub problem: String,
    pub references: Vec<Reference>,
}

/// A pack that is damaged (or missing though the index lists it).
#[derive(Debug, Clone, Serialize)]
pub struct DamagedPack {
    pub pack: PackId,
    pub problems: Vec<String>,
    /// Messages in it that still read back (intact, or present when the data was not read).
    pub readable: Vec<MessageHash>,
    /// Messages that should be in it and are not readable from it.
    pub lost: Vec<MessageHash>,
    /// Snapshots that refer to messages in it.
    pub snapshots: Vec<SnapshotId>,
}

/// A manifest that cannot be read.
#[derive(Debug, Clone, Serialize)]
pub struct DamagedSnapshot {
    pub snapshot: SnapshotId,
    pub problem: String,
}

/// The verdict.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub repository: String,
    pub mode: String,
    pub clean: bool,
    pub snapshots: usize,
    pub packs: usize,
    /// Packs whose data was read in this run.
    pub packs_read: Vec<PackId>,
    /// Distinct messages stored.
    pub messages: usize,
    /// Distinct messages decompressed and re-hashed in this run.
    pub messages_read: usize,
    /// Decompressed message bytes re-hashed.
    pub message_bytes: u64,
    /// Pack bytes read.
    pub pack_bytes: u64,
    pub elapsed_seconds: f64,
    pub damaged_messages: Vec<DamagedMessage>,
    pub damaged_packs: Vec<DamagedPack>,
    pub damaged_snapshots: Vec<DamagedSnapshot>,
    /// Dictionary files that are damaged, and how (the frames that need them are reported
    /// among the damaged messages).
    pub damaged_dictionaries: Vec<String>,
    /// The index disagrees with the packs (it is rebuilt from them when its files are removed).
    pub index_problems: Vec<String>,
    /// Other files that are damaged: the verification record, which this run rewrites (in
    /// an encrypted repository, a file that does not open was changed by someone without
    /// the key).
    pub damaged_files: Vec<String>,
    /// Not damage: index files that cannot be read (the packs are scanned instead), stray
    /// temporary or foreign files, unreadable checkpoints.
    pub notes: Vec<String>,
    /// Snapshots all of whose messages are now known intact.
    pub verified_snapshots: Vec<SnapshotId>,
    #[serde(skip)]
    pub verified_state: VerifiedState,
}

/// Options of one run.
#[derive(Debug, Clone, Copy)]
pub struct VerifyOptions {
    pub data: DataCheck,
    /// Worker threads for reading packs (0: one per core).
    pub threads: usize,
}

/// Checks `repo` and returns the report. Errors only when the repository cannot be opened or
/// listed at all; everything else is a finding in the report.
/// What the packs hold of one message.
struct Copies {
    /// The best state over all copies.
    best: EntryState,
    /// Whether a copy that is not damaged is in a pack known intact.
    intact_in_verified: bool,
}

/// Whether the check of pack `pack` (`checks` is sorted by id) found message `hash` at
/// `offset`, `length`. `by_offset` says for each check whether its entries are in offset
/// order, as a pack's table is unless it is damaged.
fn found_at(
    checks: &[PackCheck],
    by_offset: &[bool],
    pack: PackId,
    hash: &MessageHash,
    offset: u64,
    length: u64,
) -> bool {
    let Ok(i) = checks.binary_search_by_key(&pack, |c| c.id) else {
        return false;
    };
    let entries = &checks[i].entries;
    let from = if by_offset[i] {
        entries.partition_point(|e| e.offset < offset)
    } else {
        0
    };
    entries[from..]
        .iter()
        .take_while(|e| !by_offset[i] || e.offset == offset)
        .any(|e| e.hash == *hash && e.offset == offset && e.length == length)
}

/// Intact beats present, which beats damaged.
fn rank(state: &EntryState) -> u8 {
    match state {
        EntryState::Intact => 2,
        EntryState::Present => 1,
        EntryState::Damaged(_) => 0,
    }
}

pub fn verify(repo: &Repository, options: VerifyOptions) -> Result<VerifyReport, RepoError> {
    let started = std::time::Instant::now();
    let mut notes = Vec::new();

    let ids = repo.snapshots()?;
    if let Err(e) = repo.checkpoints() {
        notes.push(format!(
            "an unfinished snapshot's checkpoint is unreadable: {e}"
        ));
    }

    // Packs on disk, and files that do not belong.
    let packs: Vec<PackId> = repo.pack_ids()?;
    notes.extend(repo.stray_files());

    // The index files, read first: they say what each pack should hold, which matters when a
    // pack's own table is lost.
    let claims = IndexClaims::read(repo, &mut notes)?;

    // Read the packs, spread over the cores, each sequentially.
    let seed = u64::from_be_bytes(
        crate::repo::id::random_bytes()[..8]
            .try_into()
            .unwrap_or([0; 8]),
    );
    let cores = match options.threads {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let threads = cores.clamp(1, packs.len().max(1));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<PackCheck>> = Mutex::new(Vec::with_capacity(packs.len()));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(id) = packs.get(i) else { break };
                    let read = options.data.reads(id, seed);
                    let check = check_pack(repo, *id, read, || claims.listing(repo, *id));
                    results
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(check);
                }
            });
        }
    });
    let mut checks = results.into_inner().unwrap_or_else(|e| e.into_inner());
    checks.sort_by_key(|c| c.id);

    let by_id: HashMap<PackId, &PackCheck> = checks.iter().map(|c| (c.id, c)).collect();
    // Every message's best state over all its copies, in one map sized once (about 65 bytes
    // a message; a verify of 100,000 messages held four maps of them).
    let mut copies: HashMap<MessageHash, Copies> =
        HashMap::with_capacity(checks.iter().map(|c| c.entries.len()).sum());
    for check in &checks {
        for e in &check.entries {
            match copies.get_mut(&e.hash) {
                None => {
                    copies.insert(
                        e.hash,
                        Copies {
                            best: e.state.clone(),
                            intact_in_verified: false,
                        },
                    );
                }
                Some(known) if rank(&e.state) > rank(&known.best) => known.best = e.state.clone(),
                Some(_) => {}
            }
        }
    }
    let by_offset: Vec<bool> = checks
        .iter()
        .map(|c| c.entries.is_sorted_by_key(|e| e.offset))
        .collect();

    // What is now known intact: packs read whole without a problem (now or earlier).
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut damaged_files = Vec::new();
    let mut state = repo.verified_state().unwrap_or_else(|e| {
        let text = format!("{e} (the verification record; this run rewrites it)");
        match e {
            RepoError::Corrupt { .. } => damaged_files.push(text),
            _ => notes.push(text),
        }
        VerifiedState::default()
    });
    state
        .packs
        .retain(|id, _| by_id.get(id).is_some_and(|c| c.is_clean()));
    for check in &checks {
        if check.read_data && check.is_clean() {
            state.packs.insert(check.id, now.clone());
        }
    }
    for check in &checks {
        if !state.packs.contains_key(&check.id) {
            continue;
        }
        for e in &check.entries {
            if !matches!(e.state, EntryState::Damaged(_))
                && let Some(c) = copies.get_mut(&e.hash)
            {
                c.intact_in_verified = true;
            }
        }
    }
    let copies = copies;
    let readable = |h: &MessageHash| {
        copies
            .get(h)
            .is_some_and(|c| matches!(c.best, EntryState::Intact | EntryState::Present))
    };

    // The manifests, one per worker at a time (a long history does not fit in memory at
    // once): which messages they need that are not readable, which snapshots are wholly
    // intact, and locations that differ from where the message is (copies of the index's; the
    // index wins, so that is a note; it appears after prune repacks, for instance).
    struct ManifestCheck {
        id: SnapshotId,
        problem: Option<String>,
        all_intact: bool,
        unreadable: Vec<MessageHash>,
        elsewhere: usize,
    }
    // What one run of records needs. Snapshots of one mailbox share most of their records
    // files, so each file is checked once (a file that cannot be read is not remembered: each
    // snapshot naming it reports it).
    #[derive(Clone)]
    struct RunCheck {
        all_intact: bool,
        unreadable: Vec<MessageHash>,
        elsewhere: usize,
    }
    let by_file: Mutex<HashMap<crate::repo::RecordsId, RunCheck>> = Mutex::new(HashMap::new());
    let check_run = |locations: &[crate::repo::RecordLocation]| -> RunCheck {
        let mut check = RunCheck {
            all_intact: true,
            unreadable: Vec::new(),
            elsewhere: 0,
        };
        for r in locations {
            let Some(hash) = r.sha256.map(|h| repo.stored_name(&h)) else {
                continue;
            };
            if !readable(&hash) {
                check.unreadable.push(hash);
            }
            let found = copies.get(&hash);
            check.all_intact &= found.is_some_and(|c| c.intact_in_verified);
            if let (Some(pack), Some(offset), Some(length)) = (r.pack, r.offset, r.length)
                && found.is_some()
                && !found_at(&checks, &by_offset, pack, &hash, offset, length)
            {
                check.elsewhere += 1;
            }
        }
        check
    };
    let check_file = |id: &SnapshotId, file: &crate::repo::RecordsId| -> Result<RunCheck, String> {
        if let Some(done) = by_file.lock().unwrap_or_else(|e| e.into_inner()).get(file) {
            return Ok(done.clone());
        }
        let locations = repo
            .read_records_file(id, file)
            .map_err(|e| e.to_string())?;
        let check = check_run(&locations);
        by_file
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(*file, check.clone());
        Ok(check)
    };
    let check_manifest = |id: &SnapshotId| -> ManifestCheck {
        let mut check = ManifestCheck {
            id: id.clone(),
            problem: None,
            all_intact: true,
            unreadable: Vec::new(),
            elsewhere: 0,
        };
        let manifest = match repo.manifest_head(id) {
            Ok(m) => m,
            Err(e) => {
                check.problem = Some(e.to_string());
                check.all_intact = false;
                return check;
            }
        };
        let runs: Vec<Result<RunCheck, String>> = match &manifest.records {
            Some(list) if manifest.messages.is_empty() => {
                list.0.iter().map(|file| check_file(id, file)).collect()
            }
            _ => vec![
                repo.record_locations(&manifest)
                    .map(|l| check_run(&l))
                    .map_err(|e| e.to_string()),
            ],
        };
        for run in runs {
            match run {
                Ok(run) => {
                    check.all_intact &= run.all_intact;
                    check.unreadable.extend(run.unreadable);
                    check.elsewhere += run.elsewhere;
                }
                Err(problem) => {
                    check.problem.get_or_insert(problem);
                    check.all_intact = false;
                }
            }
        }
        check
    };
    let next = AtomicUsize::new(0);
    let manifest_checks: Mutex<Vec<ManifestCheck>> = Mutex::new(Vec::with_capacity(ids.len()));
    std::thread::scope(|scope| {
        for _ in 0..cores.clamp(1, ids.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(id) = ids.get(i) else { break };
                    let check = check_manifest(id);
                    manifest_checks
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(check);
                }
            });
        }
    });
    let mut manifest_checks = manifest_checks
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    manifest_checks.sort_by(|a, b| a.id.cmp(&b.id));
    let mut damaged_snapshots = Vec::new();
    let mut verified_snapshots = Vec::new();
    let mut unreadable_needed: BTreeSet<MessageHash> = BTreeSet::new();
    let mut elsewhere = 0usize;
    for check in manifest_checks {
        if let Some(problem) = check.problem {
            damaged_snapshots.push(DamagedSnapshot {
                snapshot: check.id,
                problem,
            });
            continue;
        }
        unreadable_needed.extend(check.unreadable);
        elsewhere += check.elsewhere;
        if check.all_intact {
            verified_snapshots.push(check.id);
        }
    }
    if elsewhere > 0 {
        notes.push(format!(
            "{elsewhere} manifest record(s) give a location other than where the message is \
             stored; harmless, the index is authoritative"
        ));
    }
    let damaged_ids: BTreeSet<&SnapshotId> =
        damaged_snapshots.iter().map(|d| &d.snapshot).collect();
    state
        .snapshots
        .retain(|id, _| ids.contains(id) && !damaged_ids.contains(id));
    for id in &ids {
        if verified_snapshots.contains(id) {
            state.snapshots.insert(id.clone(), now.clone());
        } else {
            state.snapshots.remove(id);
        }
    }

    // The index against the packs, entry by entry only when a listing does not match its pack
    // or something is damaged (when all match, every message the index places in an intact
    // pack is readable, so it could name no other home for a lost one).
    let detail = (!claims.all_match(&checks)
        || checks.iter().any(|c| !c.is_clean())
        || !unreadable_needed.is_empty())
    .then(|| claims.detail(repo, &checks));
    drop(claims);
    let (mut index_problems, expected_in) = match detail {
        Some(d) => (d.problems, d.expected),
        None => (Vec::new(), BTreeMap::new()),
    };

    // The damaged packs and messages, with every record that refers to them: a second pass
    // over the manifests, made only when something is damaged.
    // Their `snapshots` are filled in by the second pass.
    let mut damaged_packs: Vec<DamagedPack> = Vec::new();
    for check in &checks {
        let damaged_entries = check
            .entries
            .iter()
            .any(|e| matches!(e.state, EntryState::Damaged(_)));
        let expected = expected_in.get(&check.id);
        let present: BTreeSet<MessageHash> = check.entries.iter().map(|e| e.hash).collect();
        let missing_from_pack: Vec<MessageHash> = expected
            .map(|set| set.difference(&present).copied().collect())
            .unwrap_or_default();
        if check.problems.is_empty() && !damaged_entries && missing_from_pack.is_empty() {
            continue;
        }
        let mut lost: Vec<MessageHash> = check
            .entries
            .iter()
            .filter(|e| matches!(e.state, EntryState::Damaged(_)))
            .map(|e| e.hash)
            .collect();
        lost.extend(missing_from_pack);
        let readable_here: Vec<MessageHash> = check
            .entries
            .iter()
            .filter(|e| !matches!(e.state, EntryState::Damaged(_)))
            .map(|e| e.hash)
            .collect();
        let mut problems = check.problems.clone();
        if problems.is_empty() && !lost.is_empty() {
            problems.push(format!(
                "{} message(s) in it cannot be read back",
                lost.len()
            ));
        }
        damaged_packs.push(DamagedPack {
            pack: check.id,
            problems,
            readable: readable_here,
            lost,
            snapshots: Vec::new(),
        });
    }
    // Packs the index lists that are not there.
    for (id, hashes) in &expected_in {
        if by_id.contains_key(id) {
            continue;
        }
        let lost: Vec<MessageHash> = hashes.iter().filter(|h| !readable(h)).copied().collect();
        if lost.is_empty() {
            index_problems.push(format!(
                "the index lists pack {id}, which does not exist (its messages are all found in \
                 other packs)"
            ));
            continue;
        }
        damaged_packs.push(DamagedPack {
            pack: *id,
            problems: vec!["it is missing: the index lists it but there is no such file".into()],
            readable: Vec::new(),
            lost,
            snapshots: Vec::new(),
        });
    }
    let mut references: HashMap<MessageHash, Vec<Reference>> = HashMap::new();
    let mut snapshots_with: HashMap<MessageHash, BTreeSet<SnapshotId>> = HashMap::new();
    if !damaged_packs.is_empty() || !unreadable_needed.is_empty() {
        let wanted: BTreeSet<MessageHash> = damaged_packs
            .iter()
            .flat_map(|p| p.readable.iter().chain(&p.lost))
            .chain(&unreadable_needed)
            .copied()
            .collect();
        for id in &ids {
            let Ok(m) = repo.manifest(id) else { continue };
            for r in &m.messages {
                let name = r.sha256.map(|h| repo.stored_name(&h));
                let Some(hash) = name.filter(|h| wanted.contains(h)) else {
                    continue;
                };
                snapshots_with.entry(hash).or_default().insert(m.id.clone());
                if unreadable_needed.contains(&hash) {
                    references.entry(hash).or_default().push(Reference {
                        snapshot: m.id.clone(),
                        account: m.account.clone(),
                        uidl: r.uidl.clone(),
                        date: r.date.clone(),
                        from: r.from.clone(),
                        subject: r.subject.clone(),
                    });
                }
            }
        }
    }
    for pack in &mut damaged_packs {
        let snapshots: BTreeSet<SnapshotId> = pack
            .readable
            .iter()
            .chain(&pack.lost)
            .filter_map(|h| snapshots_with.get(h))
            .flatten()
            .cloned()
            .collect();
        pack.snapshots = snapshots.into_iter().collect();
    }

    // Messages the snapshots need that are not readable.
    // The pack the index places a message in (the last, if it names several).
    let home_of = |hash: &MessageHash| {
        expected_in
            .iter()
            .rev()
            .find(|(_, hashes)| hashes.contains(hash))
            .map(|(id, _)| *id)
    };
    let mut damaged_messages: Vec<DamagedMessage> = unreadable_needed
        .iter()
        .map(|hash| {
            let problem = match (copies.get(hash).map(|c| &c.best), home_of(hash)) {
                (Some(EntryState::Damaged(p)), _) => p.clone(),
                (None, Some(pack)) if by_id.contains_key(&pack) => {
                    format!("lost: its pack {pack} is damaged and no longer holds it")
                }
                (None, Some(pack)) => format!("missing: its pack {pack} does not exist"),
                _ => "missing: it is in no pack".into(),
            };
            DamagedMessage {
                hash: *hash,
                problem,
                references: references.remove(hash).unwrap_or_default(),
            }
        })
        .collect();
    damaged_messages.sort_by_key(|d| d.hash);

    let packs_read: Vec<PackId> = checks
        .iter()
        .filter(|c| c.read_data)
        .map(|c| c.id)
        .collect();
    // A message with any intact copy has Intact as its best state.
    let messages_read = copies
        .values()
        .filter(|c| c.best == EntryState::Intact)
        .count();
    let damaged_dictionaries: Vec<String> = repo
        .damaged_dictionaries()
        .iter()
        .map(|(hash, problem)| format!("{}: {problem}", repo.dictionary_label(hash)))
        .collect();
    record_damage(
        &mut state,
        &damaged_messages,
        &damaged_packs,
        &copies,
        &checks,
        &now,
    );
    let clean = damaged_messages.is_empty()
        && damaged_packs.is_empty()
        && damaged_dictionaries.is_empty()
        && damaged_snapshots.is_empty()
        && index_problems.is_empty()
        && damaged_files.is_empty();
    Ok(VerifyReport {
        repository: repo.storage().to_string(),
        mode: options.data.describe(),
        clean,
        snapshots: ids.len(),
        packs: packs.len(),
        packs_read,
        messages: copies.len(),
        messages_read,
        message_bytes: checks.iter().map(|c| c.message_bytes).sum(),
        pack_bytes: checks.iter().map(|c| c.pack_bytes).sum(),
        elapsed_seconds: started.elapsed().as_secs_f64(),
        damaged_messages,
        damaged_packs,
        damaged_snapshots,
        damaged_dictionaries,
        index_problems,
        damaged_files,
        notes,
        verified_snapshots,
        verified_state: state,
    })
}

/// Records in `state` what this run found damaged, keeping what earlier runs found that this
/// one could not judge (a quick or partial verify does not read every pack): a message stays
/// recorded until it is read back intact or no longer stored nor needed, a pack until it is
/// read whole and intact or gone.
fn record_damage(
    state: &mut VerifiedState,
    messages: &[DamagedMessage],
    packs: &[DamagedPack],
    copies: &HashMap<MessageHash, Copies>,
    checks: &[PackCheck],
    now: &str,
) {
    state.damaged_messages.retain(|hash, _| {
        copies
            .get(hash)
            .is_some_and(|c| !matches!(c.best, EntryState::Intact))
    });
    state.damaged_packs.retain(|id, _| {
        checks
            .binary_search_by_key(id, |c| c.id)
            .is_ok_and(|i| !checks[i].read_data)
    });
    for m in messages {
        state.damaged_messages.insert(m.hash, m.problem.clone());
    }
    for p in packs {
        state.damaged_packs.insert(
            p.pack,
            crate::repo::verified::DamagedPackNote {
                problem: p.problems.join("; "),
                lost: p.lost.clone(),
            },
        );
    }
    if !messages.is_empty() || !packs.is_empty() {
        state.damage_found = Some(now.to_string());
    } else if !state.has_damage() {
        state.damage_found = None;
    }
}

/// Stores what the report found intact, crash-safely (`verified.json`).
pub fn record(writer: &mut RepoWriter, report: &VerifyReport) -> Result<(), RepoError> {
    writer.record_verified(&report.verified_state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::pack::EntryCheck;

    #[test]
    fn found_at_looks_in_the_named_pack_in_offset_order_or_not() {
        let entry = |n: u8, offset: u64| EntryCheck {
            hash: MessageHash::of(&[n]),
            offset,
            length: 10,
            state: EntryState::Intact,
        };
        let check = |name: &[u8], entries: Vec<EntryCheck>| PackCheck {
            id: PackId::of(name),
            read_data: true,
            entries,
            problems: Vec::new(),
            message_bytes: 0,
            pack_bytes: 0,
        };
        let mut checks = vec![
            check(b"a", vec![entry(1, 512), entry(2, 522), entry(3, 532)]),
            // A damaged table out of offset order, and two entries at one offset.
            check(b"b", vec![entry(4, 600), entry(5, 512), entry(6, 512)]),
        ];
        checks.sort_by_key(|c| c.id);
        let by_offset: Vec<bool> = checks
            .iter()
            .map(|c| c.entries.is_sorted_by_key(|e| e.offset))
            .collect();
        let at = |pack: &[u8], n: u8, offset: u64, length: u64| {
            let hash = MessageHash::of(&[n]);
            found_at(&checks, &by_offset, PackId::of(pack), &hash, offset, length)
        };
        assert!(at(b"a", 1, 512, 10));
        assert!(at(b"a", 3, 532, 10));
        assert!(!at(b"a", 3, 522, 10), "another message's offset");
        assert!(!at(b"a", 3, 532, 11), "another length");
        assert!(!at(b"b", 1, 512, 10), "another pack");
        assert!(!at(b"c", 1, 512, 10), "a pack that was not checked");
        assert!(at(b"b", 4, 600, 10));
        assert!(at(b"b", 6, 512, 10));
    }

    #[test]
    fn subsets() {
        assert_eq!(
            DataCheck::parse_subset("10%").unwrap(),
            DataCheck::Percent(10.0)
        );
        assert_eq!(
            DataCheck::parse_subset("2/7").unwrap(),
            DataCheck::Part { k: 2, t: 7 }
        );
        for bad in ["0%", "101%", "0/3", "4/3", "x", "1/0"] {
            assert!(DataCheck::parse_subset(bad).is_err(), "{bad}");
        }
        // Parts 1..=t partition the packs.
        let packs: Vec<PackId> = (0..200u8).map(|i| PackId::of(&[i])).collect();
        let mut seen = 0;
        for k in 1..=3 {
            let part = DataCheck::Part { k, t: 3 };
            seen += packs.iter().filter(|p| part.reads(p, 0)).count();
        }
        assert_eq!(seen, packs.len());
        let all = DataCheck::Percent(100.0);
        assert!(packs.iter().all(|p| all.reads(p, 12345)));
    }
}
