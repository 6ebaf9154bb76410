//! `treuhand tenant rewrap --from V`: drives an in-place CopyObject per object of version V.

use super::cli::AdminArgs;

/// `tenant rewrap`.
///
/// # Errors
/// Any failure, with what to do.
pub async fn run(admin: &AdminArgs, from: u32, buckets: &[String]) -> anyhow::Result<()> {
    let _ = (admin, from, buckets);
    anyhow::bail!("tenant rewrap: not built yet")
}
