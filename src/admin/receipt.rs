//! `treuhand receipt verify`: checks a shred receipt's signature.

use std::path::Path;

use super::output::Output;

/// `receipt verify`.
///
/// # Errors
/// A receipt that does not verify, or unreadable input.
pub fn verify(receipt: &Path, trustee_key: &str, output: Output) -> anyhow::Result<()> {
    let _ = (receipt, trustee_key, output);
    anyhow::bail!("receipt verify: not built yet")
}
