//! `popbackup init`: a new repository, and a commented sample configuration if none exists.

use std::path::Path;

use anyhow::Context as _;

use super::GlobalArgs;
use crate::repo::Repository;
use crate::{config, durable};

/// The arguments of `init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Encrypt the repository, with the password repository_password_command, _file or
    /// _env in the configuration gives
    #[arg(long)]
    pub encrypt: bool,
    #[command(flatten)]
    pub kdf: super::key::KdfArgs,
}

pub fn run(
    args: &InitArgs,
    global: &GlobalArgs,
    config_path: &Path,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let location = super::repository_location(global, config_path)?;
    let repo = if args.encrypt {
        let password = super::repository_password(config_path, None);
        let Some(password) = password
            .get()
            .map_err(crate::repo::RepoError::PasswordUnavailable)?
        else {
            return Err(super::UsageError(format!(
                "--encrypt needs the repository password: set repository_password_command, \
                 repository_password_file or repository_password_env in {} first",
                config_path.display()
            ))
            .into());
        };
        Repository::init_encrypted(&location, password, args.kdf.params())?
    } else {
        Repository::init(&location)?
    };
    // Without a configuration the repository came from --repo.
    let wrote_config = if let (false, Some(spec)) = (config_path.exists(), &global.repo) {
        if let Some(parent) = config_path.parent() {
            durable::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        durable::create_new_file(config_path, config::sample(spec).as_bytes()).with_context(
            || {
                format!(
                    "cannot write the sample configuration {}",
                    config_path.display()
                )
            },
        )?;
        true
    } else {
        false
    };
    if global.json {
        let summary = serde_json::json!({
            "repository": location.to_string(),
            "id": repo.config().id,
            "format_version": repo.config().version,
            "encrypted": repo.is_encrypted(),
            "config": config_path,
            "config_written": wrote_config,
        });
        writeln!(out, "{summary}")?;
    } else if !global.quiet {
        writeln!(
            out,
            "created {}repository {} (id {})",
            if repo.is_encrypted() {
                "encrypted "
            } else {
                ""
            },
            location,
            repo.config().id
        )?;
        if repo.is_encrypted() {
            writeln!(
                out,
                "keep the repository password safe: without it nothing in the repository can \
                 be read"
            )?;
        }
        if wrote_config {
            writeln!(
                out,
                "wrote a sample configuration to {}: add your accounts there",
                config_path.display()
            )?;
        }
    }
    Ok(())
}
