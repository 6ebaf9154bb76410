//! Human or machine-readable (`--json`) output of the admin commands.

use serde::Serialize;

/// Where a command's result goes: human text on stdout, or one JSON document on stdout.
/// Progress and warnings always go to stderr, so `--json` output stays parseable.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// Print JSON instead of text.
    pub json: bool,
}

impl Output {
    /// Prints `value` as JSON (with `--json`) or calls `human` to print text.
    ///
    /// # Errors
    /// Serialization failures (none for plain data).
    pub fn emit<T: Serialize>(&self, value: &T, human: impl FnOnce(&T)) -> anyhow::Result<()> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(value)?);
        } else {
            human(value);
        }
        Ok(())
    }

    /// A progress or warning line on stderr (never mixed into JSON output).
    pub fn note(&self, line: impl std::fmt::Display) {
        eprintln!("{line}");
    }
}
