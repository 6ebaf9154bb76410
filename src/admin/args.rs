//! The arguments every admin command takes: `--profile FILE` and `--json`.

use std::path::PathBuf;

use super::output::Output;
use super::profile::Profile;

/// `--profile FILE` and `--json`, taken by every admin command.
#[derive(Debug, Clone, clap::Args)]
pub struct AdminArgs {
    /// The admin profile (TOML): identity, holders, share and registration directories, S3
    /// endpoint. `treuhand dev init DIR` writes examples under DIR/admin/.
    #[arg(long, value_name = "FILE")]
    pub profile: PathBuf,
    /// Print one JSON document instead of text (progress still goes to stderr).
    #[arg(long)]
    pub json: bool,
}

impl AdminArgs {
    /// Loads the profile.
    ///
    /// # Errors
    /// As [`Profile::load`].
    pub fn load(&self) -> anyhow::Result<(Profile, Output)> {
        Ok((Profile::load(&self.profile)?, Output { json: self.json }))
    }
}
