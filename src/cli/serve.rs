//! `popbackup serve`: the selected archived mail over POP3, for any mail client to download.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use super::restore::SelectionArgs;
use super::{GlobalArgs, UsageError};
use crate::config::SecretSource;
use crate::repo::Repository;
use crate::serve::{Maildrop, ServeOptions, ServeTls, Server};

/// The arguments of `serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub select: SelectionArgs,
    /// Address and port to listen on
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:1100")]
    pub listen: SocketAddr,
    /// The user name clients log in with
    #[arg(long, value_name = "NAME", default_value = "restore")]
    pub user: String,
    /// A file whose first line is the password clients log in with (mode 0600)
    #[arg(long, value_name = "PATH", group = "password")]
    pub password_file: Option<PathBuf>,
    /// A command whose first line of output is the password
    #[arg(long, value_name = "COMMAND", group = "password")]
    pub password_command: Option<String>,
    /// An environment variable holding the password
    #[arg(long, value_name = "VAR", group = "password")]
    pub password_env: Option<String>,
    /// The server's certificate chain (PEM): TLS from the first byte, or with --stls
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM)
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Offer STLS on a plain connection instead of TLS from the first byte; clients must use
    /// it before they log in
    #[arg(long, requires = "tls_cert")]
    pub stls: bool,
    /// Allow plain-text serving on an address that is not loopback, and logging in without
    /// STLS
    #[arg(long)]
    pub allow_insecure: bool,
    /// Connections served at once; more are told to try again later
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub max_connections: usize,
    /// Seconds a connection may wait between commands
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub idle_timeout: u64,
    /// Seconds a connection may last in all
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub session_timeout: u64,
}

pub fn run(repo: Repository, args: &ServeArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let source = match (
        &args.password_file,
        &args.password_command,
        &args.password_env,
    ) {
        (Some(path), _, _) => SecretSource::File(path.clone()),
        (_, Some(command), _) => SecretSource::Command(command.clone()),
        (_, _, Some(var)) => SecretSource::Env(var.clone()),
        _ => {
            return Err(UsageError(
                "serve needs the password clients log in with: --password-file PATH, \
                 --password-command COMMAND or --password-env VAR"
                    .into(),
            )
            .into());
        }
    };
    let key = format!("--{}", source.key().replace('_', "-"));
    let password = source.resolve("the command line", &key, &[], &mut |w| {
        super::warn(None, &w)
    })?;
    let items = crate::restore::select(&repo, &args.select.selection(true))?;
    let maildrop = Maildrop::new(&items);
    let mut options = ServeOptions::new(args.user.clone(), password);
    options.idle_timeout = std::time::Duration::from_secs(args.idle_timeout.max(1));
    options.session_timeout = std::time::Duration::from_secs(args.session_timeout.max(1));
    options.max_connections = args.max_connections.max(1);
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        options.tls_config = Some(crate::tls::server_config(cert, key).map_err(UsageError)?);
        options.tls = if args.stls {
            ServeTls::Stls
        } else {
            ServeTls::Implicit
        };
    }
    // Without TLS the address is loopback (bind refuses others unless allowed).
    options.allow_plain_login = options.tls == ServeTls::None || args.allow_insecure;
    let tls = options.tls;
    let server = Server::bind(args.listen, options, args.allow_insecure)?;
    let addr = server.local_addr()?;
    let interrupt = crate::snapshot::Interrupt::install()?;
    // The first line says where, so that a script (or a test) can connect to port 0's choice.
    let tls_name = match tls {
        ServeTls::None => "plain text",
        ServeTls::Implicit => "TLS",
        ServeTls::Stls => "STLS",
    };
    if global.json {
        let line = serde_json::json!({
            "messages": maildrop.len(),
            "bytes": maildrop.total_size(),
            "listen": addr.to_string(),
            "tls": tls_name,
            "user": args.user,
        });
        println!("{line}");
    } else {
        println!(
            "serving {} messages ({}) on {addr} ({tls_name}), user {}; read-only; Ctrl-C stops",
            maildrop.len(),
            super::human_bytes(maildrop.total_size()),
            args.user
        );
    }
    use std::io::Write as _;
    std::io::stdout().flush()?;
    let quiet = global.quiet;
    server.run(
        Arc::new(repo),
        Arc::new(maildrop),
        &interrupt,
        &move |line: &str| {
            if !quiet {
                eprintln!("popbackup serve: {line}");
            }
        },
    );
    if !quiet {
        eprintln!("popbackup serve: stopped");
    }
    Ok(())
}
