//! Which archived messages a restore writes: the latest snapshot of each account (or one
//! snapshot), narrowed by filters. Reads manifests only; no message data.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};

use super::RestoreError;
use crate::repo::{Manifest, MessageHash, MessageRecord, Repository, SnapshotId};

/// Filters on the messages of the selected snapshots; all given ones must match.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    /// Messages dated at or after this time (Date header, else the snapshot's time).
    pub since: Option<DateTime<Utc>>,
    /// Messages dated before this time.
    pub until: Option<DateTime<Utc>>,
    /// Case-insensitive substring of the From header.
    pub from: Option<String>,
    /// Case-insensitive substring of the Subject.
    pub subject: Option<String>,
    pub uidl: Option<String>,
    /// With or without the angle brackets.
    pub message_id: Option<String>,
    /// A SHA-256 or a prefix of one.
    pub hash: Option<String>,
}

/// What to restore.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only this account (default: every account).
    pub account: Option<String>,
    /// This snapshot (id or unique prefix, or `latest`) instead of each account's latest.
    pub snapshot: Option<String>,
    pub filters: Filters,
    /// Keep each item's UIDL and header fields, for a listing (a dry run). Writing needs only
    /// the hash and the time, and the fields of 100,000 messages are 14 MB.
    pub headers: bool,
}

/// One message to restore, with what a listing or an mbox `From ` line needs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Item {
    pub hash: MessageHash,
    /// Shared by the items of one snapshot.
    pub account: Arc<str>,
    pub snapshot: Arc<SnapshotId>,
    // Boxed strings: a restore holds an item for every message it writes.
    pub uidl: Option<Box<str>>,
    /// Bytes as archived (wire form).
    pub size: u64,
    pub date: Option<Box<str>>,
    pub from: Option<Box<str>>,
    pub subject: Option<Box<str>>,
    pub message_id: Option<Box<str>>,
    /// Maildir flags it had where it was imported from (`RS`): restored into `cur/` with them.
    pub flags: Option<Box<str>>,
    /// The `From ` line it had in the mbox it was imported from (after `From `): restored
    /// into an mbox with it.
    pub mbox_from: Option<Box<str>>,
    /// The Date header as a time, else the snapshot's time.
    pub time: DateTime<Utc>,
}

/// Parses a `--since`/`--until` value: `YYYY-MM-DD` (midnight UTC; for `until`, the end of that
/// day) or an RFC 3339 time.
pub fn parse_time(text: &str, end_of_day: bool) -> Result<DateTime<Utc>, String> {
    if let Ok(date) = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d") {
        let day = if end_of_day {
            date.succ_opt().unwrap_or(date)
        } else {
            date
        };
        return Ok(day.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("{text:?} is not a date: use YYYY-MM-DD or 2026-11-26T10:00:00Z"))
}

/// The messages selected, in snapshot order then message order, each hash once.
pub fn select(repo: &Repository, selection: &Selection) -> Result<Vec<Item>, RestoreError> {
    let ids: Vec<SnapshotId> = match &selection.snapshot {
        Some(text) => vec![repo.find_snapshot(text)?],
        None => {
            let latest = repo.latest_snapshots()?;
            match &selection.account {
                Some(account) => vec![latest.get(account).cloned().ok_or_else(|| {
                    RestoreError::NothingToRestore(format!(
                        "no snapshot of account {account:?}; accounts with snapshots: {}",
                        if latest.is_empty() {
                            "none".to_string()
                        } else {
                            latest.keys().cloned().collect::<Vec<_>>().join(", ")
                        }
                    ))
                })?],
                None => latest.into_values().collect(),
            }
        }
    };
    let mut seen = HashSet::new();
    let mut items = Vec::new();
    for id in ids {
        let mut manifest = repo.manifest_head(&id)?;
        if let Some(account) = &selection.account
            && manifest.account != *account
        {
            return Err(RestoreError::NothingToRestore(format!(
                "snapshot {id} belongs to account {:?}, not {account:?}",
                manifest.account
            )));
        }
        let mut collector = Collector::new(&manifest, selection, &mut seen, &mut items);
        repo.for_each_record(&mut manifest, |record| collector.offer(record))?;
    }
    Ok(items)
}

/// Turns one snapshot's records into the items its filters keep, each hash once. Records
/// come one at a time and their fields are moved, not copied: a restore of 100,000 messages
/// holds its items and one records file, not every record besides.
struct Collector<'a> {
    filters: &'a Filters,
    headers: bool,
    account: Arc<str>,
    snapshot: Arc<SnapshotId>,
    /// The snapshot's time: the date of a message without a Date header.
    archived: DateTime<Utc>,
    seen: &'a mut HashSet<MessageHash>,
    items: &'a mut Vec<Item>,
}

impl<'a> Collector<'a> {
    fn new(
        manifest: &Manifest,
        selection: &'a Selection,
        seen: &'a mut HashSet<MessageHash>,
        items: &'a mut Vec<Item>,
    ) -> Collector<'a> {
        Collector {
            filters: &selection.filters,
            headers: selection.headers,
            account: Arc::from(manifest.account.as_str()),
            snapshot: Arc::new(manifest.id.clone()),
            archived: DateTime::parse_from_rfc3339(&manifest.time)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_default(),
            seen,
            items,
        }
    }

    fn offer(&mut self, record: MessageRecord) {
        let filters = self.filters;
        let contains = |field: &Option<String>, needle: &Option<String>| match needle {
            None => true,
            Some(n) => field
                .as_deref()
                .is_some_and(|f| f.to_lowercase().contains(&n.to_lowercase())),
        };
        let bare_id = |id: &str| {
            id.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        };
        let Some(hash) = record.sha256 else { return };
        let time = record
            .date
            .as_deref()
            .and_then(|d| mailparse::dateparse(d).ok())
            .and_then(|secs| DateTime::from_timestamp(secs, 0))
            .unwrap_or(self.archived);
        let keep = filters.since.is_none_or(|s| time >= s)
            && filters.until.is_none_or(|u| time < u)
            && contains(&record.from, &filters.from)
            && contains(&record.subject, &filters.subject)
            && filters
                .uidl
                .as_ref()
                .is_none_or(|u| record.uidl.as_deref() == Some(u.as_str()))
            && filters.message_id.as_ref().is_none_or(|m| {
                record
                    .message_id
                    .as_deref()
                    .is_some_and(|r| bare_id(r) == bare_id(m))
            })
            && filters
                .hash
                .as_ref()
                .is_none_or(|h| hash.to_hex().starts_with(&h.to_ascii_lowercase()));
        if keep && self.seen.insert(hash) {
            let field = |f: Option<String>| f.filter(|_| self.headers).map(String::into_boxed_str);
            self.items.push(Item {
                hash,
                account: Arc::clone(&self.account),
                snapshot: Arc::clone(&self.snapshot),
                size: record.size.unwrap_or(record.list_size),
                uidl: field(record.uidl),
                date: field(record.date),
                from: field(record.from),
                subject: field(record.subject),
                message_id: field(record.message_id),
                flags: record.flags.map(String::into_boxed_str),
                mbox_from: record.mbox_from.map(String::into_boxed_str),
                time,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::{ServerInfo, Tool};

    fn record(i: u8, date: &str, from: &str, subject: &str) -> MessageRecord {
        MessageRecord {
            date: (!date.is_empty()).then(|| date.to_string()),
            from: Some(from.into()),
            subject: Some(subject.into()),
            message_id: Some(format!("<m{i}@x>")),
            ..MessageRecord::stored(i as u32, Some(format!("u{i}")), MessageHash([i; 32]), 10)
        }
    }

    fn items(filters: Filters) -> Vec<u8> {
        collect(filters, true).iter().map(|i| i.hash.0[0]).collect()
    }

    fn collect(filters: Filters, headers: bool) -> Vec<Item> {
        let manifest = Manifest {
            version: 1,
            id: SnapshotId::parse("20261126T100000Z-00000000").unwrap(),
            time: "2026-11-26T10:00:00Z".into(),
            account: "a".into(),
            complete: true,
            tool: Tool::default(),
            server: ServerInfo::default(),
            records: None,
            listing: None,
            messages: vec![
                record(1, "Mon, 5 Jan 2026 10:00:00 +0000", "Alice <a@x>", "Hello"),
                record(2, "Sat, 31 Jan 2026 23:30:00 -0100", "Bob <b@x>", "Invoice"),
                record(3, "", "Carol <c@x>", "no date"),
                record(1, "Mon, 5 Jan 2026 10:00:00 +0000", "Alice <a@x>", "Hello"),
            ],
        };
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let selection = Selection {
            filters,
            headers,
            ..Selection::default()
        };
        let mut collector = Collector::new(&manifest, &selection, &mut seen, &mut out);
        manifest
            .messages
            .into_iter()
            .for_each(|r| collector.offer(r));
        out
    }

    #[test]
    fn items_to_write_keep_only_what_writing_needs() {
        let from_bob = Filters {
            from: Some("bob".into()),
            ..Filters::default()
        };
        let [listed] = &collect(from_bob.clone(), true)[..] else {
            panic!("one message from Bob")
        };
        let [written] = &collect(from_bob, false)[..] else {
            panic!("the filter still sees the From field")
        };
        assert_eq!(listed.from.as_deref(), Some("Bob <b@x>"));
        assert_eq!(listed.uidl.as_deref(), Some("u2"));
        assert_eq!(
            (written.hash, written.time, written.size),
            (listed.hash, listed.time, listed.size)
        );
        assert_eq!(
            (
                &written.uidl,
                &written.date,
                &written.from,
                &written.subject,
                &written.message_id
            ),
            (&None, &None, &None, &None, &None)
        );
    }

    #[test]
    fn filters() {
        assert_eq!(items(Filters::default()), [1, 2, 3], "each hash once");
        let since = |s: &str| Filters {
            since: Some(parse_time(s, false).unwrap()),
            ..Filters::default()
        };
        let until = |s: &str| Filters {
            until: Some(parse_time(s, true).unwrap()),
            ..Filters::default()
        };
        assert_eq!(items(since("2026-01-06")), [2, 3]);
        // 23:30 at -0100 is 00:30 UTC on Feb 1st.
        assert_eq!(items(until("2026-01-31")), [1]);
        assert_eq!(
            items(since("2026-11-26T09:00:00Z")),
            [3],
            "no Date: archive time"
        );
        let f = Filters {
            from: Some("BOB".into()),
            ..Filters::default()
        };
        assert_eq!(items(f), [2]);
        let f = Filters {
            subject: Some("hell".into()),
            ..Filters::default()
        };
        assert_eq!(items(f), [1]);
        let f = Filters {
            message_id: Some("m3@x".into()),
            ..Filters::default()
        };
        assert_eq!(items(f), [3]);
        let f = Filters {
            uidl: Some("u2".into()),
            ..Filters::default()
        };
        assert_eq!(items(f), [2]);
        let f = Filters {
            hash: Some("0303".into()),
            ..Filters::default()
        };
        assert_eq!(items(f), [3]);
        assert!(parse_time("yesterday", false).is_err());
    }
}
