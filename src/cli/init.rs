//! `popbackup init`: a new repository, and a commented sample configuration if none exists.

use std::path::Path;

use anyhow::Context as _;

use super::GlobalArgs;
use crate::repo::Repository;
use crate::{config, durable};

pub fn run(
    global: &GlobalArgs,
    config_path: &Path,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let location = super::repository_location(global, config_path)?;
    let repo = Repository::init(&location)?;
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
            "config": config_path,
            "config_written": wrote_config,
        });
        writeln!(out, "{summary}")?;
    } else if !global.quiet {
        writeln!(
            out,
            "created repository {} (id {})",
            location,
            repo.config().id
        )?;
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
