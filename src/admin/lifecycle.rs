//! `treuhand tenant rotate` and `tenant shred`.

use std::path::Path;

use super::cli::AdminArgs;

/// `tenant rotate`.
///
/// # Errors
/// Any failure, with what to do.
pub async fn rotate(admin: &AdminArgs) -> anyhow::Result<()> {
    let _ = admin;
    anyhow::bail!("tenant rotate: not built yet")
}

/// `tenant shred`.
///
/// # Errors
/// Any failure, with what to do.
pub async fn shred(admin: &AdminArgs, version: u32, receipt_dir: &Path) -> anyhow::Result<()> {
    let _ = (admin, version, receipt_dir);
    anyhow::bail!("tenant shred: not built yet")
}
