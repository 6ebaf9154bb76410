//! `treuhand tenant status`, `policy show|set` and `grants list|approve|deny|revoke`: the
//! customer admin's view and control of the policy at every holder.

use super::cli::AdminArgs;

/// What `policy set` changes; fields not given stay as they are.
#[derive(Debug, Clone, Default)]
pub struct PolicyChange {
    /// New allowed proxies (empty: unchanged).
    pub allow_proxies: Vec<String>,
    /// New allowed justifications by wire name (empty: unchanged).
    pub justifications: Vec<String>,
    /// `N` or `N/BURST`.
    pub rate: Option<String>,
    /// Suspend.
    pub suspend: bool,
    /// Resume.
    pub resume: bool,
}

/// What to do with a grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantAction {
    /// Approve a pending grant.
    Approve,
    /// Deny a pending grant.
    Deny,
    /// End an approved grant.
    Revoke,
}

/// `tenant status`.
///
/// # Errors
/// Any failure, with what to do.
pub async fn status(admin: &AdminArgs) -> anyhow::Result<()> {
    let _ = admin;
    anyhow::bail!("tenant status: not built yet")
}

/// `tenant policy show`.
///
/// # Errors
/// Any failure, with what to do.
pub async fn policy_show(admin: &AdminArgs) -> anyhow::Result<()> {
    let _ = admin;
    anyhow::bail!("tenant policy show: not built yet")
}

/// `tenant policy set`.
///
/// # Errors
/// Any failure, with what to do.
pub async fn policy_set(admin: &AdminArgs, change: PolicyChange) -> anyhow::Result<()> {
    let _ = (admin, change);
    anyhow::bail!("tenant policy set: not built yet")
}

/// `tenant grants list`.
///
/// # Errors
/// Any failure, with what to do.
pub async fn grants_list(admin: &AdminArgs) -> anyhow::Result<()> {
    let _ = admin;
    anyhow::bail!("tenant grants list: not built yet")
}

/// `tenant grants approve|deny|revoke`.
///
/// # Errors
/// Any failure, with what to do.
pub async fn grant_action(admin: &AdminArgs, action: GrantAction, id: &str) -> anyhow::Result<()> {
    let _ = (admin, action, id);
    anyhow::bail!("tenant grants: not built yet")
}
