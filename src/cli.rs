//! Command-line interface: clap types, dispatch, output and exit codes.
//!
//! The only module that prints or uses `anyhow`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config;
use crate::repo::{RepoError, Repository};

mod browse;
pub mod exit;
mod import;
mod init;
mod inventory;
mod key;
mod restore;
mod retention;
mod serve;
mod snapshot;
mod verify;

/// Back up POP3 mailboxes into a verifiable, deduplicated, compressed archive.
#[derive(Debug, Parser)]
#[command(name = "popbackup", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Configuration file [default: $XDG_CONFIG_HOME/popbackup/config.toml]
    #[arg(long, global = true, value_name = "FILE", value_parser = config::expand_home)]
    pub config: Option<PathBuf>,
    /// Repository: a path, or s3://BUCKET/prefix (overrides `repository` in the configuration)
    #[arg(long, global = true, value_name = "PATH|URL", value_parser = config::RepoSpec::from_arg)]
    pub repo: Option<config::RepoSpec>,
    /// Print a machine-readable JSON summary on stdout
    #[arg(long, global = true)]
    pub json: bool,
    /// Print nothing on success (for cron)
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Say more about what is happening (repeat for more)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a repository (and a commented sample config if none exists)
    Init(init::InitArgs),
    /// Back up accounts: download what is new and record the whole server inventory
    Snapshot {
        /// Accounts to back up [default: all configured accounts]
        accounts: Vec<String>,
        /// Back up as usual but send no DELE: report what `delete_after_days` would delete
        #[arg(long)]
        dry_run: bool,
    },
    /// Show what is on the server, what is archived and what is new, without downloading
    Inventory {
        /// The account to inspect
        account: String,
        /// Skip the TOP pass that fetches headers of new messages
        #[arg(long)]
        no_headers: bool,
    },
    /// Import the Maildir or mbox a mail client already downloaded, each folder as a snapshot of its own
    Import {
        /// maildir:PATH (with its folders), mbox:PATH (mboxrd; mboxo:PATH for one that quoted
        /// only `From ` lines), or the name of an [imports.NAME] table [default: every
        /// configured import]
        #[arg(value_name = "maildir:PATH|mbox:PATH|NAME")]
        source: Option<String>,
        /// The account name its snapshots get [default: the folder's name]
        #[arg(long, value_name = "NAME")]
        account: Option<String>,
        /// Read and count, store nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// List snapshots
    Snapshots {
        /// Only this account's snapshots
        #[arg(long, value_name = "NAME")]
        account: Option<String>,
    },
    /// List the messages of a snapshot [default: the latest of each account]
    Ls(browse::LsArgs),
    /// Print one message's exact archived bytes
    Cat {
        /// Message hash (SHA-256, or a unique prefix of it)
        message: String,
    },
    /// Restore archived mail into a Maildir or an mbox
    Restore(Box<restore::RestoreArgs>),
    /// Serve archived mail over POP3, read-only, for any mail client to download
    Serve(Box<serve::ServeArgs>),
    /// Check that the repository is intact
    Verify(verify::VerifyArgs),
    /// Remove snapshots according to a retention policy
    Forget(retention::ForgetArgs),
    /// Remove data that no snapshot refers to
    Prune(retention::PruneArgs),
    /// Manage an encrypted repository's passwords
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Print a shell completion script (e.g. `popbackup completions bash > ~/.local/share/bash-completion/completions/popbackup`)
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page in roff (e.g. `popbackup man > ~/.local/share/man/man1/popbackup.1`)
    Man,
}

impl Command {
    #[cfg(test)]
    fn name(&self) -> &'static str {
        match self {
            Command::Init(_) => "init",
            Command::Snapshot { .. } => "snapshot",
            Command::Inventory { .. } => "inventory",
            Command::Import { .. } => "import",
            Command::Snapshots { .. } => "snapshots",
            Command::Ls(_) => "ls",
            Command::Cat { .. } => "cat",
            Command::Restore(_) => "restore",
            Command::Serve(_) => "serve",
            Command::Verify(_) => "verify",
            Command::Forget(_) => "forget",
            Command::Prune(_) => "prune",
            Command::Key(_) => "key",
            Command::Completions { .. } => "completions",
            Command::Man => "man",
        }
    }
}

/// A failed run: what to print and which exit code to return.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
    /// The command has already told the user (per-account failures of `snapshot`); `main`
    /// prints nothing more.
    pub reported: bool,
}

impl Failure {
    pub fn new(code: u8, error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            code,
            error: error.into(),
            reported: false,
        }
    }

    /// A failure already reported on stderr; only the exit code is left to give.
    /// The error and its causes on one line, each cause once: most errors already quote
    /// the cause they wrap, and saying it twice reads like two failures.
    pub fn message(&self) -> String {
        let mut text = self.error.to_string();
        for cause in self.error.chain().skip(1) {
            let cause = cause.to_string();
            if !text.contains(&cause) {
                text.push_str(": ");
                text.push_str(&cause);
            }
        }
        text
    }

    pub fn reported(code: u8) -> Failure {
        Failure {
            code,
            error: anyhow::anyhow!("exit code {code}"),
            reported: true,
        }
    }
}

/// The manual page, from the clap definitions, so that it cannot drift from `--help`.
fn manual(command: &clap::Command, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    clap_mangen::Man::new(command.clone()).render(out)
}

/// Sends the library's log to stderr: `-v` what happens (connections, TLS, capabilities,
/// phases and their times), `-vv` the POP3 dialogue too (secrets hidden), `-vvv` everything.
/// `POPBACKUP_LOG` (env_logger's syntax) overrides, for debugging one module.
fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => log::LevelFilter::Off,
        1 => log::LevelFilter::Info,
        2 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    let mut builder = env_logger::Builder::new();
    // Our own messages only, unless asked for all: rustls logs its own handshake at debug.
    builder
        .filter_level(log::LevelFilter::Off)
        .filter_module("popbackup", level)
        .format(|out, record| {
            use std::io::Write as _;
            writeln!(out, "popbackup: [{}] {}", record.level(), record.args())
        });
    if verbose >= 3 {
        builder.filter_level(level);
    }
    if let Ok(spec) = std::env::var("POPBACKUP_LOG") {
        builder.parse_filters(&spec);
    }
    let _ = builder.try_init();
}

/// Runs one command.
pub fn run(cli: Cli) -> Result<(), Failure> {
    let global = &cli.global;
    init_logging(global.verbose);
    let config_path = global.config.clone().unwrap_or_else(config::default_path);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = match &cli.command {
        Command::Init(args) => init::run(args, global, &config_path, &mut out),
        Command::Key(command) => open_repo(global, &config_path)
            .and_then(|repo| key::run(repo, command, global, &mut out)),
        Command::Snapshots { account } => open_repo(global, &config_path)
            .and_then(|repo| browse::snapshots(&repo, account.as_deref(), global.json, &mut out)),
        Command::Ls(args) => open_repo(global, &config_path)
            .and_then(|repo| browse::ls(&repo, args, global.json, &mut out)),
        Command::Cat { message } => {
            open_repo(global, &config_path).and_then(|repo| browse::cat(&repo, message, &mut out))
        }
        Command::Forget(args) => open_repo(global, &config_path)
            .and_then(|repo| retention::forget(repo, args, global, &mut out)),
        Command::Prune(args) => open_repo(global, &config_path)
            .and_then(|repo| retention::prune(repo, args, global, &mut out)),
        Command::Restore(args) => {
            let code = open_repo(global, &config_path)
                .and_then(|repo| restore::run(&repo, args, global, &mut out))
                .map_err(classify)?;
            return if code == exit::OK {
                Ok(())
            } else {
                Err(Failure::reported(code))
            };
        }
        Command::Serve(args) => {
            open_repo(global, &config_path).and_then(|repo| serve::run(repo, args, global))
        }
        Command::Verify(args) => {
            let code = open_repo(global, &config_path)
                .and_then(|repo| verify::run(repo, args, global, &mut out))
                .map_err(classify)?;
            return if code == exit::OK {
                Ok(())
            } else {
                Err(Failure::reported(code))
            };
        }
        Command::Snapshot { accounts, dry_run } => {
            return snapshot::run(global, &config_path, accounts, *dry_run, &mut out);
        }
        Command::Inventory {
            account,
            no_headers,
        } => inventory::run(global, &config_path, account, *no_headers, &mut out),
        Command::Import {
            source,
            account,
            dry_run,
        } => import::run(
            global,
            &config_path,
            source.as_deref(),
            account.as_deref(),
            *dry_run,
            &mut out,
        ),
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(*shell, &mut Cli::command(), "popbackup", &mut out);
            Ok(())
        }
        Command::Man => {
            use clap::CommandFactory as _;
            manual(&Cli::command(), &mut out).map_err(anyhow::Error::from)
        }
    };
    result.map_err(classify)
}

fn open_repo(global: &GlobalArgs, config_path: &std::path::Path) -> anyhow::Result<Repository> {
    Ok(Repository::open_with(
        repository_location(global, config_path)?,
        &repository_password(config_path, None),
    )?)
}

/// The repository password the configuration gives, fetched only if the repository is
/// encrypted (`config`: the configuration when it is read already).
fn repository_password(
    config_path: &std::path::Path,
    config: Option<&config::Config>,
) -> crate::repo::RepoPassword {
    config::repository_password(config_path, config, |w| warn(None, &w))
}

/// Where the repository is: `--repo`, else the configuration's `repository` (with its
/// `[s3]` settings for a bucket).
fn repository_location(
    global: &GlobalArgs,
    config_path: &std::path::Path,
) -> Result<crate::repo::RepoLocation, config::ConfigError> {
    config::resolve_repository(global.repo.as_ref(), config_path, &mut |w| warn(None, &w))
}

/// Like [`repository_location`], with the configuration already read.
fn configured_location(
    global: &GlobalArgs,
    config: &config::Config,
) -> Result<crate::repo::RepoLocation, config::ConfigError> {
    config::locate_repository(global.repo.as_ref(), Some(config), &config.path, &mut |w| {
        warn(None, &w)
    })
}

/// A warning on stderr, shown even with `-q`: cron should mail it.
fn warn(account: Option<&str>, message: &str) {
    match account {
        Some(a) => eprintln!("popbackup: warning: {a}: {message}"),
        None => eprintln!("popbackup: warning: {message}"),
    }
}

/// A time for people: local time with its offset, to the second (JSON output keeps UTC).
/// Every command's human output uses this one rule.
fn human_time(time: &chrono::DateTime<chrono::Utc>) -> String {
    time.with_timezone(&chrono::Local)
        .format("%Y-%m-%d %H:%M:%S %:z")
        .to_string()
}

/// [`human_time`] of an RFC 3339 time as the repository stores it (shown as it is when it
/// does not parse).
fn human_time_text(text: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| human_time(&t.with_timezone(&chrono::Utc)))
        .unwrap_or_else(|_| text.to_string())
}

/// `1.5 MiB`-style sizes for people.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Chooses the exit code for an error from its innermost known cause.
fn classify(error: anyhow::Error) -> Failure {
    // `popbackup cat ... | head` closing the pipe is not a failure, nor worth a message,
    // whichever layer the write failed in.
    let broken_pipe = error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    });
    if broken_pipe {
        return Failure::reported(exit::OK);
    }
    for cause in error.chain() {
        let kind = if let Some(e) = cause.downcast_ref::<RepoError>() {
            Some(e.kind())
        } else if cause.downcast_ref::<config::ConfigError>().is_some() {
            Some(crate::failure::FailureKind::Config)
        } else if let Some(e) = cause.downcast_ref::<crate::restore::RestoreError>() {
            Some(e.kind())
        } else if let Some(e) = cause.downcast_ref::<crate::import::ImportError>() {
            Some(e.kind())
        } else if let Some(e) = cause.downcast_ref::<crate::serve::ServeError>() {
            Some(e.kind())
        } else if let Some(e) = cause.downcast_ref::<crate::snapshot::SnapshotError>() {
            Some(e.kind())
        } else {
            cause
                .downcast_ref::<crate::pop3::Pop3Error>()
                .map(|e| e.kind())
        };
        if let Some(kind) = kind {
            return Failure::new(exit::for_kind(kind), error);
        }
        if cause.downcast_ref::<std::io::Error>().is_some() {
            return Failure::new(exit::IO_ERR, error);
        }
        if cause.downcast_ref::<UsageError>().is_some() {
            return Failure::new(exit::USAGE, error);
        }
    }
    Failure::new(exit::SOME_FAILED, error)
}

/// A mistake in how a command was called that clap cannot see (a missing `--keep-*` rule, a
/// percentage out of range): exit 64, like clap's own.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Parses the command line. clap's own errors exit 64 (sysexits' usage error) instead of 2,
/// so that every usage mistake gives one code; `--help` and `--version` exit 0.
pub fn parse_args() -> Result<Cli, std::process::ExitCode> {
    use clap::Parser as _;
    Cli::try_parse().map_err(|e| {
        let _ = e.print();
        if e.use_stderr() {
            std::process::ExitCode::from(exit::USAGE)
        } else {
            std::process::ExitCode::SUCCESS
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_spec_command_parses() {
        for args in [
            vec!["init"],
            vec!["snapshot"],
            vec!["snapshot", "work", "home"],
            vec!["inventory", "work", "--no-headers"],
            vec!["snapshots"],
            vec!["ls", "abc"],
            vec!["cat", "abc"],
            vec!["restore", "--to", "maildir:/tmp/x"],
            vec!["verify"],
            vec!["forget", "--keep-last", "3"],
            vec!["prune", "--dry-run"],
        ] {
            let full = std::iter::once("popbackup").chain(args.iter().copied());
            let cli = Cli::try_parse_from(full).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert_eq!(cli.command.name(), args[0]);
        }
        let cli =
            Cli::try_parse_from(["popbackup", "--json", "-q", "verify", "--repo", "/r"]).unwrap();
        assert!(cli.global.json && cli.global.quiet);
        assert_eq!(
            cli.global.repo,
            Some(config::RepoSpec::Local(PathBuf::from("/r")))
        );
        let cli =
            Cli::try_parse_from(["popbackup", "verify", "--repo", "s3://mail/alice"]).unwrap();
        let Some(config::RepoSpec::S3(url)) = cli.global.repo else {
            panic!("{:?}", cli.global.repo)
        };
        assert_eq!(
            (url.bucket.as_str(), url.prefix.as_str()),
            ("mail", "alice")
        );
        let err = Cli::try_parse_from(["popbackup", "verify", "--repo", "s3://NO"]).unwrap_err();
        assert!(err.to_string().contains("not a bucket name"), "{err}");
    }

    #[test]
    fn repository_errors_choose_their_exit_code() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none");
        let cli = Cli::try_parse_from([
            "popbackup",
            "snapshots",
            "--repo",
            missing.to_str().unwrap(),
        ])
        .unwrap();
        let failure = run(cli).unwrap_err();
        assert_eq!(failure.code, exit::CONFIG);
        assert!(
            failure.error.to_string().contains("popbackup init"),
            "{:#}",
            failure.error
        );
    }

    #[test]
    fn sizes_for_people() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 << 20), "5.0 MiB");
    }
}
