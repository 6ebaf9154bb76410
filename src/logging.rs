//! What may reach a log: the one tracing set-up of every treuhand process, and config parse
//! errors described without the text of the file.
//!
//! Every process (`treuhand proxy`, `trustee`, `dev` and the children it starts, `bench` and
//! its children) logs through [`init`]. The user picks levels with `TREUHAND_LOG` or
//! `RUST_LOG`, but a second filter, [`dependency_ceilings`], always applies on top, so no
//! directive can raise a dependency that logs request material above its ceiling.
//!
//! This module must not depend on anything else in the crate.

use std::path::Path;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The most verbose level each dependency may log at, whatever `RUST_LOG` says, and why.
/// Checked against the sources of the versions in `Cargo.lock`; a target prefix covers its
/// submodules (`s3s` covers `s3s::service`, `s3s::ops::signature`, ...).
///
/// Checked and left unclamped, because they never log header values or payloads: `h2`
/// (its `Headers`, `PushPromise` and `Data` frames leave fields and bytes out of `Debug` on
/// purpose), `hyper` (logs nothing unless built with `--cfg hyper_unstable_tracing`, and then
/// only lengths and states), `hyper_util` (pool keys: scheme and authority) and `object_store`
/// (retry notices with the URL; its requests are signed in headers, not in the URL).
pub const DEPENDENCY_CEILINGS: &[(&str, LevelFilter)] = &[
    // s3s 0.14.1 at debug logs each whole request (`service.rs`: `debug!(?req)`, with the
    // `x-amz-server-side-encryption-customer-key` header that carries the customer's share and
    // the `Authorization` header), the correctly computed signature when a signature does not
    // match (`ops/signature.rs`: replayable by anyone who reads the log), POST form fields
    // (`debug!(?multipart)`) and aws-chunked trailers; at trace, chunk metadata. Its warn and
    // error events carry the virtual-host hint, error values (ours are built by
    // `proxy::error::to_s3_error`, which never puts secrets in them) and 5xx responses.
    ("s3s", LevelFilter::WARN),
    // reqwest at trace can dump every byte read and written on a connection
    // (`reqwest::connect::verbose`: the storage backend's signed requests and bodies) and
    // logs proxy and connection details at debug.
    ("reqwest", LevelFilter::INFO),
    // rustls at trace prints whole handshake messages (session tickets, PSK identities and
    // binders, Finished verify data); debug stays for handshake diagnostics.
    ("rustls", LevelFilter::DEBUG),
    ("tokio_rustls", LevelFilter::DEBUG),
    ("hyper_rustls", LevelFilter::DEBUG),
];

/// The filter that always applies on top of the user's: dependencies capped at their
/// [`DEPENDENCY_CEILINGS`], everything else up to `default` (the user's filter then decides).
pub fn dependency_ceilings(default: LevelFilter) -> Targets {
    DEPENDENCY_CEILINGS.iter().fold(
        Targets::new().with_default(default),
        |targets, (target, level)| targets.with_target(*target, *level),
    )
}

/// The user's filter: `TREUHAND_LOG` first (the bench harness documents it), then `RUST_LOG`,
/// then `info`.
pub fn user_filter() -> EnvFilter {
    EnvFilter::try_from_env("TREUHAND_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"))
}

/// A subscriber writing to `writer`, filtered by `user` and, always, by
/// [`dependency_ceilings`]. Both are global filters: an event is logged only if both let it
/// through, so no user directive (`s3s=trace`, `trace`) can raise a ceiling.
pub fn subscriber<W>(user: EnvFilter, writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    // The ceiling filter's own default follows the user's most verbose level, so the combined
    // max-level hint (which also caps the `log` crate bridge) stays what the user asked for.
    let default = user.max_level_hint().unwrap_or(LevelFilter::TRACE);
    tracing_subscriber::registry()
        .with(dependency_ceilings(default))
        .with(user)
        .with(tracing_subscriber::fmt::layer().with_writer(writer))
}

/// Installs [`subscriber`] with [`user_filter`] on stderr as the global default (and the
/// `log` crate bridge, through which rustls and reqwest log). A second call does nothing.
pub fn init() {
    let _ = subscriber(user_filter(), std::io::stderr).try_init();
}

/// Describes a TOML error in `path` by line, column and kind only.
///
/// `toml`'s `Display` quotes the offending line, and a registration's offending line can be
/// `secret_access_key = "..."`. serde's messages echo a wrongly typed value ("invalid type:
/// integer `...`") or an unknown variant, so only the part of the message that cannot hold
/// file content is kept: field names in "unknown field" / "missing field" / "duplicate field"
/// (names, never values), and the "expected ..." list (from the schema or the TOML grammar).
pub fn describe_toml_error(path: &Path, text: &str, error: &toml::de::Error) -> String {
    let kind = error_kind(error.message());
    match error.span() {
        Some(span) => {
            let (line, column) = line_and_column(text, span.start);
            format!("{}: line {line}, column {column}: {kind}", path.display())
        }
        None => format!("{}: {kind}", path.display()),
    }
}

/// One-based line and column (in characters) of byte `offset` in `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The message without anything that may come from the file.
fn error_kind(message: &str) -> String {
    let message = message.trim();
    // The expected part comes last and is ours (schema names) or the grammar's.
    let (head, expected) = match message.rfind(", expected ") {
        Some(i) => message.split_at(i),
        None => (message, ""),
    };
    let names_a_field = ["unknown field `", "missing field `", "duplicate field `"]
        .iter()
        .any(|prefix| head.starts_with(prefix));
    let head = if names_a_field {
        head.to_owned()
    } else {
        match head.find(['`', '"', '\'']) {
            Some(i) => format!("{}(value withheld)", &head[..i]),
            None => head.to_owned(),
        }
    };
    format!("{head}{}", expected.replace('\n', " "))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly on purpose
    use super::*;

    use std::sync::{Arc, Mutex};

    /// A writer collecting everything logged into one buffer.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    /// Logs one event per (target, level) through the subscriber `directives` builds.
    fn logged(directives: &str) -> String {
        let capture = Capture::default();
        let subscriber = subscriber(EnvFilter::new(directives), capture.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!(target: "s3s::service", "s3s-trace");
            tracing::debug!(target: "s3s::service", "s3s-debug");
            tracing::info!(target: "s3s::ops", "s3s-info");
            tracing::warn!(target: "s3s::ops", "s3s-warn");
            tracing::trace!(target: "reqwest::connect::verbose", "reqwest-trace");
            tracing::info!(target: "reqwest::connect", "reqwest-info");
            tracing::trace!(target: "rustls::server::hs", "rustls-trace");
            tracing::debug!(target: "rustls::server::hs", "rustls-debug");
            tracing::trace!(target: "treuhand::proxy", "treuhand-trace");
            tracing::trace!(target: "h2::codec", "h2-trace");
        });
        String::from_utf8(capture.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn trace_everywhere_keeps_dependencies_under_their_ceilings() {
        for directives in ["trace", "s3s=trace,reqwest=trace,rustls=trace,trace"] {
            let out = logged(directives);
            for hidden in [
                "s3s-trace",
                "s3s-debug",
                "s3s-info",
                "reqwest-trace",
                "rustls-trace",
            ] {
                assert!(
                    !out.contains(hidden),
                    "{directives}: {hidden} logged:\n{out}"
                );
            }
            for shown in [
                "s3s-warn",
                "reqwest-info",
                "rustls-debug",
                "treuhand-trace",
                "h2-trace",
            ] {
                assert!(out.contains(shown), "{directives}: {shown} missing:\n{out}");
            }
        }
    }

    #[test]
    fn user_filter_still_lowers_levels() {
        let out = logged("warn");
        assert!(out.contains("s3s-warn"), "{out}");
        for hidden in ["rustls-debug", "reqwest-info", "treuhand-trace", "h2-trace"] {
            assert!(!out.contains(hidden), "{hidden} logged:\n{out}");
        }
    }

    fn toml_error(text: &str) -> String {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)] // only parsed
        struct Registration {
            access_key_id: String,
            secret_access_key: String,
            kind: Option<Kind>,
        }
        #[derive(Debug, serde::Deserialize)]
        #[serde(rename_all = "lowercase")]
        enum Kind {
            Fs,
        }
        let error = toml::from_str::<Registration>(text).unwrap_err();
        describe_toml_error(Path::new("t.toml"), text, &error)
    }

    #[test]
    fn toml_syntax_error_gives_line_and_column_without_the_line() {
        let text = "access_key_id = \"AK\"\nsecret_access_key = \"hunter2-secret\" x\n";
        let message = toml_error(text);
        assert!(
            message.starts_with("t.toml: line 2, column 38: "),
            "{message}"
        );
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn toml_type_and_variant_errors_withhold_the_value() {
        for (text, secret) in [
            (
                "access_key_id = \"AK\"\nsecret_access_key = 31415926535\n",
                "31415926535",
            ),
            (
                "access_key_id = \"AK\"\nsecret_access_key = 'a'\nkind = \"hunter2\"\n",
                "hunter2",
            ),
            (
                "access_key_id = \"AK\"\nsecret_access_key = [\"hunter2\"]\n",
                "hunter2",
            ),
        ] {
            let message = toml_error(text);
            assert!(!message.contains(secret), "{message}");
            assert!(message.contains("line "), "{message}");
        }
    }

    #[test]
    fn toml_field_errors_keep_the_field_name() {
        let message = toml_error("access_key_id = \"AK\"\nsecret_access_keys = \"x\"\n");
        assert!(
            message.contains("unknown field `secret_access_keys`"),
            "{message}"
        );
        let message = toml_error("access_key_id = \"AK\"\n");
        assert!(
            message.contains("missing field `secret_access_key`"),
            "{message}"
        );
    }

    #[test]
    fn line_and_column_count_characters() {
        assert_eq!(line_and_column("ab\nçd", 5), (2, 2));
        assert_eq!(line_and_column("", 3), (1, 1));
        assert_eq!(line_and_column("a\n", 2), (2, 1));
    }
}
