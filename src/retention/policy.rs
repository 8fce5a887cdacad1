//! Which snapshots a `forget` keeps: restic's rules, per account.
//!
//! - `last N`: the N newest snapshots;
//! - `daily/weekly/monthly/yearly N`: for the N newest days (ISO weeks, months, years) that have
//!   snapshots, the newest snapshot of each;
//! - `within D`: every snapshot taken within D of the account's newest one.
//!
//! Calendar periods are taken in the time zone given (the user's local time for the CLI), so a
//! day is a local day across DST changes and month ends are the calendar's.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Datelike, TimeZone, Utc};
use serde::Serialize;

use crate::repo::SnapshotId;

/// The `--keep-*` options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeepPolicy {
    pub last: usize,
    pub daily: usize,
    pub weekly: usize,
    pub monthly: usize,
    pub yearly: usize,
    pub within: Option<Duration>,
}

impl KeepPolicy {
    /// True when no rule is given: forgetting would remove everything, which is refused.
    pub fn is_empty(&self) -> bool {
        *self == KeepPolicy::default()
    }
}

/// One snapshot with why it is kept (empty: it goes).
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub snapshot: SnapshotId,
    pub account: String,
    pub time: DateTime<Utc>,
    pub reasons: Vec<String>,
}

impl Decision {
    pub fn keep(&self) -> bool {
        !self.reasons.is_empty()
    }
}

/// The decisions for one account's snapshots, newest first.
pub fn decide<Tz: TimeZone>(
    account: &str,
    snapshots: &[(SnapshotId, DateTime<Utc>)],
    policy: &KeepPolicy,
    tz: &Tz,
) -> Vec<Decision> {
    let mut sorted: Vec<&(SnapshotId, DateTime<Utc>)> = snapshots.iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    let mut decisions: Vec<Decision> = sorted
        .iter()
        .map(|(id, time)| Decision {
            snapshot: id.clone(),
            account: account.to_string(),
            time: *time,
            reasons: Vec::new(),
        })
        .collect();
    for d in decisions.iter_mut().take(policy.last) {
        d.reasons.push("last".into());
    }
    // A calendar period as a comparable key: (year, day of year / ISO week / month / 0).
    type Period<Tz> = fn(&DateTime<Tz>) -> (i32, u32);
    let buckets: [(usize, &str, Period<Tz>); 4] = [
        (policy.daily, "daily", |t| (t.year(), t.ordinal())),
        (policy.weekly, "weekly", |t| {
            let w = t.iso_week();
            (w.year(), w.week())
        }),
        (policy.monthly, "monthly", |t| (t.year(), t.month())),
        (policy.yearly, "yearly", |t| (t.year(), 0)),
    ];
    for (count, name, bucket) in buckets {
        let mut seen = BTreeSet::new();
        for d in decisions.iter_mut() {
            if seen.len() >= count {
                break;
            }
            // Newest first: the first snapshot met in a period is that period's newest.
            if seen.insert(bucket(&d.time.with_timezone(tz))) {
                d.reasons.push(name.into());
            }
        }
    }
    if let (Some(within), Some(newest)) = (policy.within, decisions.first().map(|d| d.time)) {
        let limit = chrono::Duration::from_std(within).unwrap_or(chrono::Duration::MAX);
        for d in decisions.iter_mut() {
            if newest - d.time <= limit {
                d.reasons.push("within".into());
            }
        }
    }
    decisions
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::FixedOffset;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn history(times: &[&str]) -> Vec<(SnapshotId, DateTime<Utc>)> {
        times
            .iter()
            .map(|t| (SnapshotId::new(at(t)), at(t)))
            .collect()
    }

    fn kept(times: &[&str], policy: KeepPolicy, tz: &impl TimeZone) -> Vec<String> {
        let mut out: Vec<String> = decide("a", &history(times), &policy, tz)
            .into_iter()
            .filter(Decision::keep)
            .map(|d| d.time.to_rfc3339())
            .collect();
        out.sort();
        out
    }

    fn utc(times: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = times.iter().map(|t| at(t).to_rfc3339()).collect();
        v.sort();
        v
    }

    #[test]
    fn last_and_daily() {
        let times = [
            "2026-03-01T08:00:00Z",
            "2026-03-01T20:00:00Z",
            "2026-03-02T08:00:00Z",
            "2026-03-04T08:00:00Z",
            "2026-03-04T09:00:00Z",
        ];
        let p = KeepPolicy {
            last: 2,
            ..Default::default()
        };
        assert_eq!(kept(&times, p, &Utc), utc(&times[3..]));
        let p = KeepPolicy {
            daily: 3,
            ..Default::default()
        };
        // The newest of each of the three newest days that have snapshots.
        assert_eq!(
            kept(&times, p, &Utc),
            utc(&[
                "2026-03-01T20:00:00Z",
                "2026-03-02T08:00:00Z",
                "2026-03-04T09:00:00Z"
            ])
        );
    }

    #[test]
    fn days_are_local_days() {
        // 23:30 UTC on Jan 31 is already Feb 1 at UTC+1: one day in UTC, two days there.
        let times = ["2026-01-31T22:00:00Z", "2026-01-31T23:30:00Z"];
        let p = KeepPolicy {
            daily: 5,
            ..Default::default()
        };
        assert_eq!(kept(&times, p.clone(), &Utc), utc(&times[1..]));
        let plus_one = FixedOffset::east_opt(3600).unwrap();
        assert_eq!(kept(&times, p, &plus_one), utc(&times));
        let p = KeepPolicy {
            monthly: 2,
            ..Default::default()
        };
        // In UTC both are in January (one kept); at UTC+1 the newest is in February (both).
        assert_eq!(kept(&times, p.clone(), &Utc), utc(&times[1..]));
        assert_eq!(kept(&times, p, &plus_one), utc(&times));
    }

    #[test]
    fn weeks_months_years_and_within() {
        let times = [
            "2025-12-29T12:00:00Z", // ISO week 1 of 2026
            "2025-12-31T12:00:00Z", // same ISO week, still 2025
            "2026-01-04T12:00:00Z", // Sunday, ISO week 1
            "2026-01-05T12:00:00Z", // Monday, ISO week 2
            "2026-02-28T12:00:00Z",
            "2026-03-31T12:00:00Z",
        ];
        let p = KeepPolicy {
            weekly: 4,
            ..Default::default()
        };
        // Weeks 14, 9, 2 and 1 of 2026; week 1 began on Dec 29, 2025, and its newest is Jan 4.
        assert_eq!(
            kept(&times, p, &Utc),
            utc(&[
                "2026-01-04T12:00:00Z",
                "2026-01-05T12:00:00Z",
                "2026-02-28T12:00:00Z",
                "2026-03-31T12:00:00Z"
            ])
        );
        let p = KeepPolicy {
            monthly: 4,
            ..Default::default()
        };
        assert_eq!(
            kept(&times, p, &Utc),
            utc(&[
                "2025-12-31T12:00:00Z",
                "2026-01-05T12:00:00Z",
                "2026-02-28T12:00:00Z",
                "2026-03-31T12:00:00Z"
            ])
        );
        let p = KeepPolicy {
            yearly: 5,
            ..Default::default()
        };
        assert_eq!(
            kept(&times, p, &Utc),
            utc(&["2025-12-31T12:00:00Z", "2026-03-31T12:00:00Z"])
        );
        let p = KeepPolicy {
            within: Some(Duration::from_secs(31 * 86_400)),
            ..Default::default()
        };
        assert_eq!(
            kept(&times, p, &Utc),
            utc(&["2026-02-28T12:00:00Z", "2026-03-31T12:00:00Z"])
        );
        assert!(KeepPolicy::default().is_empty());
    }
}
