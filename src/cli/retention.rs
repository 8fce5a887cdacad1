//! `popbackup forget` and `popbackup prune`.

use super::{GlobalArgs, UsageError, human_bytes};
use crate::repo::Repository;
use crate::retention::{self, KeepPolicy};

/// The arguments of `forget`.
#[derive(Debug, clap::Args)]
pub struct ForgetArgs {
    /// Keep the N newest snapshots
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_last: usize,
    /// Keep the newest snapshot of each of the N newest days with snapshots
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_daily: usize,
    /// Keep the newest snapshot of each of the N newest ISO weeks with snapshots
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_weekly: usize,
    /// Keep the newest snapshot of each of the N newest months with snapshots
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_monthly: usize,
    /// Keep the newest snapshot of each of the N newest years with snapshots
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_yearly: usize,
    /// Keep every snapshot within this long of the account's newest (e.g. 30d, 12h)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub keep_within: Option<std::time::Duration>,
    /// Only this account's snapshots [default: every account, each on its own]
    #[arg(long, value_name = "NAME")]
    pub account: Option<String>,
    /// Show the plan; remove nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Run even though the last verify found damage that is not healed yet
    #[arg(long)]
    pub force: bool,
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    crate::config::parse_duration(text)
        .ok_or_else(|| format!("{text:?} is not a duration like 30d, 12h or 90m"))
}

/// The arguments of `prune`.
#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Repack packs with at least this percentage of unused bytes
    #[arg(long, value_name = "PERCENT", default_value_t = 50.0)]
    pub max_unused: f64,
    /// Show the plan; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Run even though the last verify found damage that is not healed yet
    #[arg(long)]
    pub force: bool,
}

pub fn forget(
    repo: Repository,
    args: &ForgetArgs,
    global: &GlobalArgs,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let policy = KeepPolicy {
        last: args.keep_last,
        daily: args.keep_daily,
        weekly: args.keep_weekly,
        monthly: args.keep_monthly,
        yearly: args.keep_yearly,
        within: args.keep_within,
    };
    if policy.is_empty() {
        return Err(UsageError(
            "give at least one --keep-* rule (forget without one would remove every snapshot); \
             for example --keep-daily 7 --keep-weekly 5 --keep-monthly 12"
                .into(),
        )
        .into());
    }
    // A dry run changes nothing, so it may show what the command would do.
    if !args.force && !args.dry_run {
        retention::refuse_if_damaged(&repo, "forget")?;
    }
    let (plan, removed) = if args.dry_run {
        let plan = retention::plan_forget(&repo, &policy, args.account.as_deref(), &chrono::Local)?;
        (plan, 0)
    } else {
        let mut writer = repo.lock("forget")?;
        let plan = retention::plan_forget(
            writer.repo(),
            &policy,
            args.account.as_deref(),
            &chrono::Local,
        )?;
        let removed = retention::forget(&mut writer, &plan)?;
        writer.close()?;
        (plan, removed)
    };
    if global.json {
        let summary = serde_json::json!({
            "dry_run": args.dry_run,
            "removed": removed,
            "decisions": plan.decisions,
        });
        serde_json::to_writer_pretty(&mut *out, &summary)?;
        writeln!(out)?;
        return Ok(());
    }
    if !global.quiet || args.dry_run {
        for d in &plan.decisions {
            writeln!(
                out,
                "{}  {}  {:<20} {}  {}",
                if d.keep() { "keep  " } else { "remove" },
                d.snapshot,
                d.account,
                super::human_time(&d.time),
                d.reasons.join(", ")
            )?;
        }
        let going = plan.removed().count();
        if args.dry_run {
            writeln!(
                out,
                "dry run: {going} snapshot(s) would be removed; nothing was changed"
            )?;
        } else {
            writeln!(
                out,
                "removed {removed} snapshot(s); run `popbackup prune` to free the data only they used"
            )?;
        }
    }
    Ok(())
}

pub fn prune(
    repo: Repository,
    args: &PruneArgs,
    global: &GlobalArgs,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    if !(0.0..=100.0).contains(&args.max_unused) {
        return Err(UsageError("--max-unused is a percentage from 0 to 100".into()).into());
    }
    // A dry run changes nothing, so it may show what the command would do.
    if !args.force && !args.dry_run {
        retention::refuse_if_damaged(&repo, "prune")?;
    }
    let mut writer = repo.lock("prune")?;
    let plan = retention::plan_prune(writer.repo(), args.max_unused)?;
    let summary = format!(
        "{} packs: {} to delete, {} to repack ({} copied); {} freed; {} messages referenced; \
         {} unused message list(s) to delete",
        plan.packs.len(),
        plan.delete_packs,
        plan.repack_packs,
        human_bytes(plan.copied_bytes),
        human_bytes(plan.freed_bytes),
        plan.referenced,
        plan.unused_records.len()
    );
    if args.dry_run {
        if global.json {
            serde_json::to_writer_pretty(&mut *out, &plan)?;
            writeln!(out)?;
        } else {
            writeln!(out, "dry run: {summary}; nothing was changed")?;
        }
        return Ok(());
    }
    let report = retention::prune(&mut writer, plan)?;
    writer.close()?;
    if global.json {
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
    } else if !global.quiet {
        writeln!(
            out,
            "pruned: {summary}; {} new pack(s)",
            report.new_packs.len()
        )?;
    }
    Ok(())
}
