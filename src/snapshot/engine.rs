//! One snapshot run: every selected account, in parallel (bounded), each over one connection,
//! all storing into one locked repository.
//!
//! Per account: log in, list, compare with the repository ([`Inventory`]), download only the
//! new messages (pipelined RETR, hashed and compressed as they stream), commit checkpoints
//! while a long run goes on, then commit the manifest of the whole server inventory. No DELE is
//! ever sent. One account failing never stops the others; its [`AccountReport`] says why.

use std::io::{Read, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::SnapshotError;
use super::inventory::{Inventory, Listing, take_listing};
use super::run_list::{RunList, initial_record};
use super::starting_point::{Prefetch, StartingPoint};
use super::storer::{Done, Storer};
use super::writer::{Opening, WriterSource};
use crate::config::Account;
use crate::mail::HeaderCapture;
use crate::pop3::{self, Fetch, FetchError, Reply, Session};
use crate::repo::{
    ListingDigest, Manifest, MessageRecord, OpeningWriter, RecordsList, RepoError, RepoWriter,
    ServerInfo, SnapshotId, StoreError, Stored, Tool, manifest::MANIFEST_VERSION,
    repair::RepairReport,
};

/// Checkpoints come at least every `checkpoint_size` bytes, but no closer than the bytes
/// downloaded so far divided by this.
const CHECKPOINT_SPACING_DIVISOR: u64 = 8;

/// Messages up to this size are read into memory before the repository lock is taken, so
/// parallel accounts download while another stores; larger ones stream under the lock.
pub(super) const BUFFER_LIMIT: usize = 1 << 20;

/// Run-wide settings.
#[derive(Debug, Clone)]
pub struct SnapshotOptions {
    pub parallel_accounts: usize,
    pub compression_level: Option<i32>,
    /// Commit a checkpoint after this many downloaded bytes...
    pub checkpoint_size: u64,
    /// ...or after this long, whichever comes first.
    pub checkpoint_interval: Duration,
    /// Send no DELE; report what `delete_after_days` would delete.
    pub dry_run: bool,
    /// Set by SIGINT/SIGTERM: stop at the next message, keeping what was downloaded.
    pub interrupt: super::Interrupt,
}

/// Hooks for progress display; every method has a no-op default.
pub trait Observer: Sync {
    /// The account's inventory is known: `to_download` messages, `bytes` announced by LIST.
    fn planned(&self, _account: &str, _on_server: usize, _to_download: usize, _bytes: u64) {}
    /// One message was downloaded (`bytes` delivered).
    fn downloaded(&self, _account: &str, _bytes: u64) {}
    /// The account is done, successfully or not.
    fn finished(&self, _report: &AccountReport) {}
}

/// An observer that shows nothing.
pub struct Silent;
impl Observer for Silent {}

/// How an account's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    /// Worth retrying next run (server busy, login delay, timeout, dropped connection).
    Temporary,
    Failed,
}

/// What happened to one account; `snapshot --json` prints a list of these.
#[derive(Debug, Clone, Serialize)]
pub struct AccountReport {
    pub account: String,
    pub outcome: Outcome,
    /// The error, when the outcome is not `ok`.
    pub message: Option<String>,
    /// What kind of failure ended the account's run, when it did not succeed.
    pub failure: Option<crate::failure::FailureKind>,
    pub messages_on_server: usize,
    /// Messages the repository held already for this account.
    pub already_archived: usize,
    /// Messages downloaded in this run.
    pub downloaded: usize,
    /// Downloaded messages that were new to the repository and stored.
    pub new_messages: usize,
    /// Downloaded messages whose bytes the repository held already (another account, a UIDL
    /// change); stored once.
    pub duplicates: usize,
    /// Messages of the last snapshot no longer on the server (still in the archive).
    pub vanished: usize,
    /// Messages listed but refused by RETR (deleted meanwhile); recorded without content.
    pub refused: usize,
    /// Messages deleted on the server by `delete_after_days` (committed by QUIT).
    pub deleted: usize,
    /// With `--dry-run`: what `delete_after_days` would have deleted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub would_delete: Vec<crate::retention::DeleCandidate>,
    pub bytes_downloaded: u64,
    /// Compressed bytes added to the repository.
    pub bytes_written: u64,
    /// The committed snapshot; `null` if the run did not finish.
    pub snapshot: Option<SnapshotId>,
    pub elapsed_seconds: f64,
    pub warnings: Vec<String>,
    /// Stopped (or not started) by SIGINT/SIGTERM; what it downloaded is in a checkpoint.
    pub interrupted: bool,
}

impl AccountReport {
    /// An empty report, for tests of what reads reports.
    #[cfg(test)]
    pub(crate) fn for_tests(account: &str) -> AccountReport {
        AccountReport::new(account)
    }

    fn new(account: &str) -> AccountReport {
        AccountReport {
            account: account.to_string(),
            outcome: Outcome::Ok,
            message: None,
            failure: None,
            messages_on_server: 0,
            already_archived: 0,
            downloaded: 0,
            new_messages: 0,
            duplicates: 0,
            vanished: 0,
            refused: 0,
            deleted: 0,
            would_delete: Vec::new(),
            bytes_downloaded: 0,
            bytes_written: 0,
            snapshot: None,
            elapsed_seconds: 0.0,
            warnings: Vec::new(),
            interrupted: false,
        }
    }
}

/// What [`run_snapshot`] did.
pub struct SnapshotRun {
    /// One report per account, in the order they were given.
    pub reports: Vec<AccountReport>,
    /// Damage that `verify` had found and this run healed (see [`crate::repo::repair`]).
    pub repair: RepairReport,
    /// The writer, still holding the lock, for the caller to close.
    pub writer: Result<RepoWriter, RepoError>,
}

/// Backs up `accounts` into the repository held by `writer`, up to
/// `options.parallel_accounts` at a time, then retires the damaged packs whose messages the
/// run stored again (a message `verify` found damaged is downloaded again when the server
/// still has it).
pub fn run_snapshot(
    writer: OpeningWriter,
    accounts: &[&Account],
    options: &SnapshotOptions,
    observer: &dyn Observer,
) -> SnapshotRun {
    let shared = Opening::new(writer);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<AccountReport>>> = Mutex::new(vec![None; accounts.len()]);
    let workers = options.parallel_accounts.clamp(1, accounts.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(account) = accounts.get(i) else {
                        break;
                    };
                    if let Some(signal) = options.interrupt.signal() {
                        let mut report = AccountReport::new(&account.name);
                        let error = SnapshotError::Interrupted { signal };
                        report.outcome = Outcome::Temporary;
                        report.failure = Some(error.kind());
                        report.message = Some(format!("not started: {error}"));
                        report.interrupted = true;
                        lock(&results)[i] = Some(report);
                        continue;
                    }
                    let report = snapshot_account(&shared, account, options, observer);
                    observer.finished(&report);
                    lock(&results)[i] = Some(report);
                }
            });
        }
    });
    let reports = results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .zip(accounts)
        .map(|(r, a)| {
            r.unwrap_or_else(|| {
                // Only reachable if a worker panicked: report it rather than lose the account.
                let mut report = AccountReport::new(&a.name);
                report.outcome = Outcome::Failed;
                report.failure = Some(crate::failure::FailureKind::Internal);
                report.message = Some("internal error: the account's worker stopped".into());
                report
            })
        })
        .collect();
    let mut repair = RepairReport::default();
    let writer = shared.into_writer().and_then(|mut writer| {
        // An interrupted run ends as soon as it can; the next one repairs.
        if !options.interrupt.is_set() {
            repair = crate::repo::repair::repair(&mut writer)?;
        }
        Ok(writer)
    });
    SnapshotRun {
        reports,
        repair,
        writer,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Backs up one account and reports how it went; never panics on bad input.
pub fn snapshot_account(
    shared: &dyn WriterSource,
    account: &Account,
    options: &SnapshotOptions,
    observer: &dyn Observer,
) -> AccountReport {
    let started = Instant::now();
    let mut report = AccountReport::new(&account.name);
    let result = AccountRun {
        shared,
        account,
        options,
        observer,
        report: &mut report,
        prefetch: None,
    }
    .run();
    if let Err(error) = result {
        report.interrupted = matches!(error, SnapshotError::Interrupted { .. });
        report.outcome = if error.is_temporary() {
            Outcome::Temporary
        } else {
            Outcome::Failed
        };
        report.failure = Some(error.kind());
        report.message = Some(error.to_string());
    }
    report.elapsed_seconds = started.elapsed().as_secs_f64();
    report
}

struct AccountRun<'a> {
    shared: &'a dyn WriterSource,
    account: &'a Account,
    options: &'a SnapshotOptions,
    observer: &'a dyn Observer,
    report: &'a mut AccountReport,
    /// The account's latest snapshot and the checkpoints, being read while the session is
    /// set up (TLS, login, UIDL and LIST take about as long as reading a large manifest).
    prefetch: Option<Prefetch>,
}

impl AccountRun<'_> {
    fn run(&mut self) -> Result<(), SnapshotError> {
        let time = chrono::Utc::now();
        let id = SnapshotId::new(time);
        // Only this run writes this account's manifests, and files are replaced by rename,
        // so they can be read without the lock while other accounts store.
        let layout = self.shared.layout();
        let account = self.account.name.clone();
        self.prefetch = Some(Prefetch::start(layout, account));
        let creds = self
            .account
            .credentials(&mut |w| self.report.warnings.push(w))?;
        let server = self.account.server_options();
        let phase = Instant::now();
        let mut session = pop3::open_session(&server, &creds).map_err(|e| self.login_error(e))?;
        drop(creds);
        log::info!(
            "{}: logged in as {:?} in {:.2} s",
            self.account.name,
            self.account.user,
            phase.elapsed().as_secs_f64()
        );
        let result = self.with_session(&mut session, id, time);
        // QUIT only after the manifest is committed. It is the server's commit point: the
        // DELEs a retention rule sent take effect only if it succeeds.
        match result {
            Ok(marked) => {
                match session.quit() {
                    Ok(()) => self.report.deleted = marked,
                    Err(e) if marked > 0 => self.report.warnings.push(format!(
                        "QUIT failed after {marked} message(s) were marked for deletion: {e}; \
                         the server keeps them unless it committed anyway"
                    )),
                    Err(e) => self
                        .report
                        .warnings
                        .push(format!("QUIT failed after the snapshot was committed: {e}")),
                }
                Ok(())
            }
            Err(e) => {
                drop(session);
                Err(e)
            }
        }
    }

    /// A refused login names the account, user, host and secret source; other failures to
    /// open the session stay as they are.
    fn login_error(&self, error: pop3::Pop3Error) -> SnapshotError {
        let refused_login = matches!(
            &error,
            pop3::Pop3Error::Server { command, .. }
                if matches!(*command, "USER" | "PASS" | "APOP" | "AUTH")
        ) && error.class() == pop3::ErrorClass::Auth;
        if !refused_login {
            return error.into();
        }
        SnapshotError::LoginRefused {
            account: self.account.name.clone(),
            user: self.account.user.clone(),
            host: self.account.host.clone(),
            secret_key: self.account.secret.key(),
            source: Box::new(error),
        }
    }

    /// Lists, downloads and commits; then marks for deletion what a retention rule allows.
    /// Returns how many messages were marked (they go at QUIT).
    fn with_session<S: Read + Write>(
        &mut self,
        session: &mut Session<S>,
        id: SnapshotId,
        time: chrono::DateTime<chrono::Utc>,
    ) -> Result<usize, SnapshotError> {
        let caps = session.capabilities();
        if caps.expire().as_deref() == Some("0") {
            self.report.warnings.push(
                "the server announces EXPIRE 0: it deletes messages once they have been \
                 downloaded, by any client; popbackup never sends DELE, but this server may \
                 remove what it sends"
                    .into(),
            );
        }
        let server_info = ServerInfo {
            host: self.account.host.clone(),
            port: self.account.port,
            tls: tls_name(self.account.tls).into(),
            greeting: session.greeting().to_string(),
            capabilities: caps
                .entries()
                .iter()
                .map(|c| {
                    std::iter::once(c.tag.as_str())
                        .chain(c.args.iter().map(String::as_str))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect(),
        };
        log::info!(
            "{}: capabilities: {}",
            self.account.name,
            server_info.capabilities.join(", ")
        );
        let phase = Instant::now();
        let listing = take_listing(session)?;
        log::info!(
            "{}: listed {} messages in {:.2} s",
            self.account.name,
            listing.messages.len(),
            phase.elapsed().as_secs_f64()
        );
        self.report
            .warnings
            .extend(listing.warnings.iter().cloned());
        let digest = listing.digest();
        if let Some(records) = self.unchanged_since_latest(digest) {
            let manifest = Manifest {
                version: MANIFEST_VERSION,
                id: id.clone(),
                time: time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                account: self.account.name.clone(),
                complete: true,
                tool: Tool::default(),
                server: server_info,
                records: Some(records),
                listing: digest,
                messages: Vec::new(),
            };
            lock(self.shared.writer()?).commit(&manifest)?;
            let n = listing.messages.len();
            self.report.messages_on_server = n;
            self.report.already_archived = n;
            self.observer.planned(&self.account.name, n, 0, 0);
            self.report.snapshot = Some(id);
            return Ok(0);
        }
        let (mut inventory, old_checkpoints) = self.inventory(&listing)?;
        // The inventory holds what the run needs of the listing.
        let uidl_supported = listing.uidl_supported;
        drop(listing);
        if let Some(w) = inventory.shrink_warning() {
            self.report.warnings.push(w);
        }
        self.report.messages_on_server = inventory.entries.len();
        self.report.already_archived = inventory.archived_count();
        self.report.vanished = inventory.vanished.len();
        self.observer.planned(
            &self.account.name,
            inventory.entries.len(),
            inventory.new_count(),
            inventory.new_bytes(),
        );

        // The manifest's fields but its list, which is written as the run goes.
        let mut head = Manifest {
            version: MANIFEST_VERSION,
            id: id.clone(),
            time: time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            account: self.account.name.clone(),
            complete: false,
            tool: Tool::default(),
            server: server_info,
            records: None,
            listing: None,
            messages: Vec::new(),
        };
        let mut list = RunList::new(&self.shared.layout(), &inventory, &head.time);
        let phase = Instant::now();
        let downloaded = self.download(session, &mut inventory, &head, &mut list);
        log::info!(
            "{}: downloaded {} of {} new messages in {:.2} s",
            self.account.name,
            self.report.downloaded,
            inventory.new_count(),
            phase.elapsed().as_secs_f64()
        );
        // A signal ends the download between two messages (a run that got everything
        // commits as usual).
        let downloaded = match (downloaded, self.options.interrupt.signal()) {
            (Err(_), Some(signal)) => Err(SnapshotError::Interrupted { signal }),
            (result, _) => result,
        };
        if let Err(error) = downloaded {
            // Keep what arrived: the next run resumes from this checkpoint.
            if self.report.downloaded > 0
                && let Ok(writer) = self.shared.writer()
            {
                let _ = list.checkpoint(&mut lock(writer), &head, &mut inventory);
            }
            return Err(error);
        }
        // Named unless a message could not be retrieved: a later run seeing this listing
        // then has nothing to download.
        head.listing = digest;
        let phase = Instant::now();
        let mut writer = lock(self.shared.writer()?);
        let checks = list.commit(&mut writer, &head, &mut inventory)?;
        log::info!(
            "{}: committed snapshot {id} in {:.2} s",
            self.account.name,
            phase.elapsed().as_secs_f64()
        );
        // What deletion needs of the run is in `checks`; the listing goes before its plan.
        drop(inventory);
        self.report.warnings.extend(checks.warnings());
        self.report.snapshot = Some(id.clone());
        for old in old_checkpoints {
            if old != id {
                writer.discard_checkpoint(&old)?;
            }
        }
        let Some(days) = self.account.delete_after_days else {
            return Ok(0);
        };
        // Deletion only with stable UIDLs: a message that vanished under one UIDL and came
        // back under another means the server renumbered.
        let problem = if !uidl_supported {
            Some("the server has no UIDL, so messages cannot be told apart safely".to_string())
        } else if checks.renumbered() {
            Some("a message came back under a new UIDL (the server renumbered)".to_string())
        } else {
            None
        };
        let manifest = writer.repo().manifest_head(&id)?;
        let plan = crate::retention::plan_deletions(
            writer.repo(),
            &manifest,
            days,
            chrono::Utc::now(),
            problem,
        )?;
        drop(writer);
        if let Some(reason) = &plan.disabled {
            self.report.warnings.push(format!(
                "no message is deleted on the server this run: {reason}"
            ));
            return Ok(0);
        }
        if self.options.dry_run {
            self.report.would_delete = plan.candidates;
            return Ok(0);
        }
        let mut marked = 0;
        for c in &plan.candidates {
            match session.dele(c.msg) {
                Ok(()) => marked += 1,
                Err(e @ pop3::Pop3Error::Server { .. }) => self.report.warnings.push(format!(
                    "the server refused DELE {} (UIDL {}): {e}",
                    c.msg, c.uidl
                )),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(marked)
    }

    /// The records file of the latest snapshot when this run's listing (`digest`) is the one
    /// it archived completely; never with a retention rule, which needs the records.
    fn unchanged_since_latest(&mut self, digest: Option<ListingDigest>) -> Option<RecordsList> {
        let prefetch = self.prefetch.as_ref()?;
        let found = prefetch.shortcut.recv().ok().flatten();
        let records = found
            .filter(|s| Some(s.listing) == digest && self.account.delete_after_days.is_none())
            .map(|s| s.records);
        let _ = prefetch.go.send(records.is_none());
        records
    }

    /// The inventory, and the ids of this account's checkpoints it resumed from.
    fn inventory(
        &mut self,
        listing: &Listing,
    ) -> Result<(Inventory, Vec<SnapshotId>), SnapshotError> {
        let prefetched = self.prefetch.take().map(|p| {
            let _ = p.go.send(true);
            p.thread.join()
        });
        let start = match prefetched {
            Some(Ok(Ok(Some(start)))) => start,
            Some(Ok(Err(e))) => return Err(e.into()),
            // Not started, told to stop, or the reading thread panicked: read it here.
            _ => StartingPoint::read(&self.shared.layout(), &self.account.name)?,
        };
        let layout = self.shared.layout();
        let writer = self.shared.writer()?;
        let resumed = start.checkpoints.iter().map(|c| c.id.clone()).collect();
        // The lock only for each lookup: the records files are read meanwhile, and other
        // accounts store.
        let inventory = Inventory::build(
            &self.account.name,
            listing,
            start.previous,
            start.checkpoints,
            &layout,
            |h| lock(writer).location(h),
        )?;
        Ok((inventory, resumed))
    }

    /// Downloads every new message, storing each as it streams in, with checkpoints.
    fn download<S: Read + Write>(
        &mut self,
        session: &mut Session<S>,
        inventory: &mut Inventory,
        head: &Manifest,
        list: &mut RunList,
    ) -> Result<(), SnapshotError> {
        let requests: Vec<Fetch> = inventory
            .new_entries()
            .map(|e| Fetch::retr(e.server.msg, e.server.size))
            .collect();
        if requests.is_empty() {
            return Ok(());
        }
        let level = self
            .account
            .compression_level
            .or(self.options.compression_level);
        let account = self.account.name.clone();
        let report = &mut *self.report;
        let shared = self.shared.writer()?;
        lock(shared).expect_messages(requests.len());
        let observer = self.observer;
        let options = self.options;
        let time = head.time.as_str();
        std::thread::scope(|scope| {
            let mut storer = Storer::start(scope, shared, level);
            let mut since_checkpoint = 0u64;
            let mut last_checkpoint = Instant::now();
            let apply = |done: Vec<Done>,
                         list: &mut RunList,
                         report: &mut AccountReport|
             -> Result<(), StoreError> {
                for d in done {
                    let stored = d.result.map_err(StoreError::Repo)?;
                    count_stored(report, stored);
                    if let Some(record) = list.download_mut(d.slot) {
                        fill_in_stored(record, stored, time);
                    }
                }
                Ok(())
            };
            let result = session.fetch(&requests, |request, reply| {
                let Some(slot) = inventory.position_of(request.msg) else {
                    // Every request was made from an entry.
                    return Ok(());
                };
                let entry = &inventory.entries[slot];
                let mut record = initial_record(entry, None, time);
                let body = match reply {
                    Reply::Refused(e) => {
                        report.refused += 1;
                        report.warnings.push(format!(
                            "message {} (UIDL {}) was listed but not sent ({e}); it was \
                             probably deleted during the run",
                            request.msg,
                            record.uidl.as_deref().unwrap_or("-")
                        ));
                        // Listed without content.
                        list.downloaded(slot, record);
                        return Ok(());
                    }
                    Reply::Body(body) => body,
                };
                let mut capture = HeaderCapture::new();
                let mut source = Tee {
                    inner: body,
                    capture: &mut capture,
                };
                let mut buffer = storer.buffer();
                (&mut source)
                    .take(BUFFER_LIMIT as u64 + 1)
                    .read_to_end(&mut buffer)
                    .map_err(StoreError::Source)?;
                let bytes = if buffer.len() <= BUFFER_LIMIT {
                    let len = buffer.len() as u64;
                    set_headers(&mut record, &capture);
                    list.downloaded(slot, record);
                    let done = storer.submit(slot, buffer).map_err(StoreError::Repo)?;
                    apply(done, list, report)?;
                    len
                } else {
                    // A large message streams under the lock, after the queue has drained.
                    apply(storer.wait_all().map_err(StoreError::Repo)?, list, report)?;
                    let stored = {
                        let mut writer = lock(shared);
                        writer.set_compression_level(level);
                        writer.store(&mut (&buffer[..]).chain(&mut source))?
                    };
                    count_stored(report, stored);
                    fill_in_stored(&mut record, stored, time);
                    set_headers(&mut record, &capture);
                    list.downloaded(slot, record);
                    stored.raw_len()
                };
                report.downloaded += 1;
                report.bytes_downloaded += bytes;
                observer.downloaded(&account, bytes);
                if options.interrupt.is_set() {
                    // Ends the fetch; the caller checkpoints what arrived.
                    return Err(StoreError::Source(std::io::Error::new(
                        std::io::ErrorKind::Interrupted,
                        "interrupted by a signal",
                    )));
                }
                since_checkpoint += bytes;
                // Each checkpoint finishes the open pack and holds up the queue while it
                // writes, so on a long first run they are spaced by at least an eighth of
                // what is stored.
                let spacing = options
                    .checkpoint_size
                    .max(report.bytes_downloaded / CHECKPOINT_SPACING_DIVISOR);
                if since_checkpoint >= spacing
                    || last_checkpoint.elapsed() >= options.checkpoint_interval
                {
                    apply(storer.wait_all().map_err(StoreError::Repo)?, list, report)?;
                    list.checkpoint(&mut lock(shared), head, inventory)
                        .map_err(StoreError::Repo)?;
                    since_checkpoint = 0;
                    last_checkpoint = Instant::now();
                }
                Ok(())
            });
            // Whatever happened, what was queued is stored (and counted) before returning.
            let rest = storer.wait_all().map_err(StoreError::Repo);
            storer.close();
            let rest = rest.and_then(|done| apply(done, list, report));
            match (result, rest) {
                (Ok(()), Ok(())) => Ok(()),
                (Err(FetchError::Pop3(e)), _) => Err(e.into()),
                (Err(FetchError::Sink(StoreError::Repo(e))), _)
                | (Ok(()), Err(StoreError::Repo(e))) => Err(e.into()),
                (Err(FetchError::Sink(StoreError::Source(source))), _)
                | (Ok(()), Err(StoreError::Source(source))) => Err(pop3::Pop3Error::Io {
                    during: "RETR".into(),
                    source,
                }
                .into()),
            }
        })
    }
}

/// Counts a stored message.
fn count_stored(report: &mut AccountReport, stored: Stored) {
    match stored {
        Stored::New(_, entry, _) => {
            report.new_messages += 1;
            report.bytes_written += entry.length;
        }
        Stored::Duplicate(..) => report.duplicates += 1,
    }
}

/// Gives a downloaded message's record its content.
fn fill_in_stored(record: &mut MessageRecord, stored: Stored, time: &str) {
    record.sha256 = Some(stored.hash());
    record.size = Some(stored.raw_len());
    record.first_seen = Some(time.to_string());
}

/// Gives a downloaded message's record its header fields.
fn set_headers(record: &mut MessageRecord, capture: &HeaderCapture) {
    let headers = capture.summary();
    record.date = headers.date;
    record.from = headers.from;
    record.subject = headers.subject;
    record.message_id = headers.message_id;
}

/// Passes bytes through while capturing the header section.
struct Tee<'a, 'b> {
    inner: &'a mut dyn Read,
    capture: &'b mut HeaderCapture,
}

impl Read for Tee<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.capture.feed(&buf[..n]);
        Ok(n)
    }
}

fn tls_name(mode: pop3::TlsMode) -> &'static str {
    match mode {
        pop3::TlsMode::Implicit => "implicit",
        pop3::TlsMode::Starttls => "starttls",
        pop3::TlsMode::None => "none",
    }
}
