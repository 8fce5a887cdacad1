//! `popbackup key`: an encrypted repository's passwords (one key file each), and the
//! password options `init --encrypt` shares with it.

use std::path::PathBuf;

use anyhow::Context as _;

use super::{GlobalArgs, UsageError};
use crate::config::SecretSource;
use crate::repo::Repository;
use crate::repo::crypto::KdfParams;

/// What `popbackup key` does.
#[derive(Debug, clap::Subcommand)]
pub enum KeyCommand {
    /// List the key files; `*` marks the one the configured password opens
    List,
    /// Add a password that opens the repository (the configured one keeps working)
    Add(NewPassword),
    /// Remove a key file (the last one is refused)
    Remove {
        /// The key's id, or a unique prefix of it (see `key list`)
        id: String,
    },
    /// Change the configured password: add a key for the new one, then remove the one the
    /// configured password opens
    Passwd(NewPassword),
}

/// A new password and the cost of its key.
#[derive(Debug, Clone, clap::Args)]
pub struct NewPassword {
    #[command(flatten)]
    pub source: NewPasswordSource,
    #[command(flatten)]
    pub kdf: KdfArgs,
}

/// Where a new password comes from: never the command line itself.
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = false)]
pub struct NewPasswordSource {
    /// Read the new password from the first line of FILE (readable only by you)
    #[arg(long, value_name = "FILE")]
    pub new_password_file: Option<PathBuf>,
    /// Take the new password from the environment variable VAR
    #[arg(long, value_name = "VAR")]
    pub new_password_env: Option<String>,
    /// Take the new password from the first line COMMAND prints (e.g. `pass show backup`)
    #[arg(long, value_name = "COMMAND")]
    pub new_password_command: Option<String>,
}

/// How costly the key derivation of a new password is.
#[derive(Debug, Clone, clap::Args)]
pub struct KdfArgs {
    /// Argon2id memory for the new password's key (lower only for a machine that cannot
    /// spare it: it is what makes guessing the password slow)
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = parse_kdf_memory)]
    pub kdf_memory: u64,
    /// Argon2id passes over that memory
    #[arg(long, value_name = "N", default_value_t = KdfParams::DEFAULT.iterations,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub kdf_iterations: u32,
}

impl KdfArgs {
    pub fn params(&self) -> KdfParams {
        KdfParams {
            memory_kib: (self.kdf_memory / 1024) as u32,
            iterations: self.kdf_iterations,
            parallelism: KdfParams::DEFAULT.parallelism,
        }
    }
}

fn parse_kdf_memory(text: &str) -> Result<u64, String> {
    let bytes = crate::config::parse_size(text)
        .ok_or_else(|| format!("{text:?} is not a size like 64MiB"))?;
    if !(1 << 20..=4 << 30).contains(&bytes) {
        return Err("give between 1MiB and 4GiB".into());
    }
    Ok(bytes)
}

impl NewPassword {
    /// The new password, fetched by the rules of account passwords.
    fn fetch(&self) -> anyhow::Result<zeroize::Zeroizing<Vec<u8>>> {
        let given = &self.source;
        let source = match (
            &given.new_password_file,
            &given.new_password_env,
            &given.new_password_command,
        ) {
            (Some(file), _, _) => SecretSource::File(file.clone()),
            (_, Some(var), _) => SecretSource::Env(var.clone()),
            (_, _, Some(command)) => SecretSource::Command(command.clone()),
            _ => return Err(UsageError("give the new password's source".into()).into()),
        };
        let secret = source.resolve(
            "the command line",
            &source.key_for("new_password").replace('_', "-"),
            &[],
            &mut |w| super::warn(None, &w),
        )?;
        Ok(zeroize::Zeroizing::new(secret.expose().as_bytes().to_vec()))
    }
}

pub fn run(
    repo: Repository,
    command: &KeyCommand,
    global: &GlobalArgs,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    if !repo.is_encrypted() {
        return Err(UsageError(format!(
            "{} is not encrypted: it has no keys (an encrypted repository is made with \
             `popbackup init --encrypt`)",
            repo.storage()
        ))
        .into());
    }
    match command {
        KeyCommand::List => list(&repo, global, out),
        KeyCommand::Add(new) => {
            let password = new.fetch()?;
            let mut writer = repo.lock("key add")?;
            let id = writer.add_key(&password, new.kdf.params())?;
            writer.close()?;
            report(global, out, "added", &id)
        }
        KeyCommand::Remove { id } => {
            let mut writer = repo.lock("key remove")?;
            let removed = writer.remove_key(id)?;
            writer.close()?;
            report(global, out, "removed", &removed)
        }
        KeyCommand::Passwd(new) => {
            let password = new.fetch()?;
            let (_, Some(old)) = repo.keys()? else {
                anyhow::bail!("the repository was opened without a key file");
            };
            let mut writer = repo.lock("key passwd")?;
            // The new key first: a crash in between leaves both passwords working.
            let id = writer.add_key(&password, new.kdf.params())?;
            writer
                .remove_key(&old)
                .with_context(|| format!("added key {id}, but the old key {old} is still there"))?;
            writer.close()?;
            if global.json {
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({ "added": id, "removed": old })
                )?;
            } else if !global.quiet {
                writeln!(out, "added key {id}\nremoved key {old}")?;
                writeln!(
                    out,
                    "now point repository_password_* in the configuration at the new password"
                )?;
            }
            Ok(())
        }
    }
}

fn list(
    repo: &Repository,
    global: &GlobalArgs,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let (keys, current) = repo.keys()?;
    if global.json {
        let keys: Vec<serde_json::Value> = keys
            .iter()
            .map(|k| {
                serde_json::json!({
                    "id": k.id,
                    "current": Some(&k.id) == current.as_ref(),
                    "created": k.file.created,
                    "host": k.file.host,
                    "user": k.file.user,
                    "kdf": k.file.kdf.algorithm,
                    "memory_kib": k.file.kdf.params.memory_kib,
                    "iterations": k.file.kdf.params.iterations,
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::Value::from(keys))?;
        return Ok(());
    }
    writeln!(
        out,
        "  {:<16} {:<20} {:<24} KDF",
        "ID", "CREATED", "USER@HOST"
    )?;
    for k in &keys {
        let mark = if Some(&k.id) == current.as_ref() {
            '*'
        } else {
            ' '
        };
        writeln!(
            out,
            "{mark} {:<16} {:<20} {:<24} {} {} MiB x{}",
            &k.id[..16],
            k.file.created,
            format!("{}@{}", k.file.user, k.file.host),
            k.file.kdf.algorithm,
            k.file.kdf.params.memory_kib / 1024,
            k.file.kdf.params.iterations,
        )?;
    }
    Ok(())
}

fn report(
    global: &GlobalArgs,
    out: &mut dyn std::io::Write,
    what: &str,
    id: &str,
) -> anyhow::Result<()> {
    if global.json {
        writeln!(out, "{}", serde_json::json!({ what: id }))?;
    } else if !global.quiet {
        writeln!(out, "{what} key {id}")?;
    }
    Ok(())
}
