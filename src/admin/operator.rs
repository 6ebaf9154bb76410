//! `treuhand operator grant request` and `operator grants list`.

use super::cli::AdminArgs;

/// The arguments of `operator grant request`.
#[derive(Debug, Clone)]
pub struct GrantRequestArgs {
    /// Tenant id.
    pub tenant: String,
    /// Ticket id.
    pub ticket: String,
    /// Duration text (`2h`).
    pub duration: String,
    /// Reason.
    pub reason: String,
    /// Key version scope.
    pub key_version: Option<u32>,
}

/// `operator grant request`.
///
/// # Errors
/// Any failure, with what to do.
pub async fn grant_request(admin: &AdminArgs, request: GrantRequestArgs) -> anyhow::Result<()> {
    let _ = (admin, request);
    anyhow::bail!("operator grant request: not built yet")
}

/// `operator grants list`.
///
/// # Errors
/// Any failure, with what to do.
pub async fn grants_list(admin: &AdminArgs, tenant: &str) -> anyhow::Result<()> {
    let _ = (admin, tenant);
    anyhow::bail!("operator grants list: not built yet")
}
