//! `treuhand tenant handover`: the 2018 exit. Re-deals a departing holder's share to a new
//! trustee without changing the tenant key, the customer's share or any stored object.

use std::path::Path;

use super::cli::AdminArgs;

/// `tenant handover`.
///
/// # Errors
/// Any failure, with what to do.
pub async fn run(
    admin: &AdminArgs,
    from: &str,
    to: &str,
    receipt_dir: &Path,
) -> anyhow::Result<()> {
    let _ = (admin, from, to, receipt_dir);
    anyhow::bail!("tenant handover: not built yet")
}
