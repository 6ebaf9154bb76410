//! `treuhand audit pull`: incremental audit verification against a kept checkpoint.

use std::path::Path;

use super::cli::AdminArgs;

/// `audit pull`.
///
/// # Errors
/// A log that does not extend the last verified checkpoint (rolled back, forked, an entry
/// removed), naming the first broken point; or any failure to fetch it.
pub async fn pull(admin: &AdminArgs, state: &Path) -> anyhow::Result<()> {
    let _ = (admin, state);
    anyhow::bail!("audit pull: not built yet")
}
