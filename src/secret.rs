//! Secret newtypes: the tenant master key, KEK, DEK and Shamir share values, and secret
//! strings from configuration ([`SecretString`], which alone is `Clone`; see there).
//!
//! Every type here zeroizes on drop, prints `[REDACTED]` under `Debug`, has no `Display`, no
//! `Serialize` and no `Clone`, compares in constant time and exposes its bytes through exactly
//! one accessor, `expose_secret()`, so every use is greppable. This module must not depend on
//! anything else in the crate.

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Length in bytes of every symmetric key and share value in treuhand.
pub const KEY_LEN: usize = 32;

macro_rules! secret_key_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Zeroize, ZeroizeOnDrop)]
        pub struct $name([u8; KEY_LEN]);

        impl $name {
            /// Wraps raw key bytes. The caller's copy should itself be zeroized (use
            /// `zeroize::Zeroizing` for intermediates).
            pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
                Self(bytes)
            }

            /// Copies a slice of exactly [`KEY_LEN`] bytes; `None` for any other length.
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                let array: [u8; KEY_LEN] = bytes.try_into().ok()?;
                Some(Self(array))
            }

            /// The one accessor for the raw secret bytes.
            pub fn expose_secret(&self) -> &[u8; KEY_LEN] {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "([REDACTED])"))
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.0.ct_eq(&other.0).into()
            }
        }

        impl Eq for $name {}
    };
}

secret_key_type!(
    /// Tenant master key: 32 random bytes created in the customer's key ceremony and never
    /// stored whole. It only exists in memory between a Shamir combine and the KEK derivation.
    Tmk
);
secret_key_type!(
    /// Key-encryption key, HKDF-derived from the [`Tmk`] for one tenant and key version.
    Kek
);
secret_key_type!(
    /// Data-encryption key: 32 random bytes per object, stored only wrapped under the [`Kek`].
    Dek
);
secret_key_type!(
    /// The secret y value of one Shamir share (32 bytes). Its x coordinate is public and fixed
    /// by the tenant's enrollment, so it travels separately (see [`Share`]).
    ShareValue
);

/// One holder's Shamir share of a tenant master key: the public x coordinate and the secret y.
///
/// This is what the raw SSE-C header carries (the y part only, 32 bytes) and what the
/// `treuhand-share-v1:` text envelope encodes together with tenant and key version.
#[derive(PartialEq, Eq)]
pub struct Share {
    x: u8,
    y: ShareValue,
}

impl Share {
    /// Builds a share from its x coordinate and secret value.
    pub fn new(x: u8, y: ShareValue) -> Self {
        Self { x, y }
    }

    /// The public x coordinate (never 0 for a valid share).
    pub fn x(&self) -> u8 {
        self.x
    }

    /// The secret y value.
    pub fn value(&self) -> &ShareValue {
        &self.y
    }

    /// The one accessor for the raw secret y bytes.
    pub fn expose_secret(&self) -> &[u8; KEY_LEN] {
        self.y.expose_secret()
    }
}

impl fmt::Debug for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Share")
            .field("x", &self.x)
            .field("y", &"[REDACTED]")
            .finish()
    }
}

/// A secret string from configuration, such as an S3 secret access key.
///
/// Like the key types it zeroizes on drop, prints `[REDACTED]` under `Debug`, compares in
/// constant time (the length is not hidden) and has one accessor, `expose_secret()`. Unlike
/// them it is `Clone` (configurations are cloned into the running services) and deserializes
/// from a plain string. It has no `Serialize`: a config type writing it back (a registration,
/// `proxy.toml`) names [`serialize_exposed`] on the field, so every place that writes a secret
/// out is greppable too.
#[derive(Clone, Default, Zeroize, ZeroizeOnDrop, serde::Deserialize)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    /// The one accessor for the secret text.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for SecretString {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl PartialEq for SecretString {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for SecretString {}

/// Serializes a [`SecretString`] in clear, for `#[serde(serialize_with = ...)]` on the config
/// fields that must be written to a file (registrations, `proxy.toml`).
///
/// # Errors
/// The serializer's.
pub fn serialize_exposed<S: serde::Serializer>(
    secret: &SecretString,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(secret.expose_secret())
}

/// [`serialize_exposed`] for an optional secret (absent fields are skipped by the caller's
/// `skip_serializing_if`).
pub fn serialize_exposed_option<S: serde::Serializer>(
    secret: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match secret {
        Some(secret) => serializer.serialize_str(secret.expose_secret()),
        None => serializer.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_contains_key_bytes() {
        let tmk = Tmk::from_bytes([0xAB; KEY_LEN]);
        let share = Share::new(2, ShareValue::from_bytes([0xCD; KEY_LEN]));
        let printed = format!("{tmk:?} {share:?} {:?}", Dek::from_bytes([0xEF; KEY_LEN]));
        assert!(printed.contains("REDACTED"));
        for needle in ["ab", "AB", "171", "cd", "CD", "205", "ef", "EF", "239"] {
            assert!(!printed.contains(needle), "{printed} leaks {needle}");
        }
    }

    #[test]
    fn secret_string_debug_is_redacted_and_serializes_only_on_request() {
        let secret = SecretString::from("wJalrXUtnFEMI/K7MDENG");
        assert_eq!(format!("{secret:?} {secret:#?}"), "[REDACTED] [REDACTED]");
        #[derive(serde::Serialize)]
        struct Written {
            #[serde(serialize_with = "serialize_exposed")]
            key: SecretString,
        }
        let text = serde_json::to_string(&Written {
            key: secret.clone(),
        })
        .unwrap_or_default();
        assert_eq!(text, r#"{"key":"wJalrXUtnFEMI/K7MDENG"}"#);
        assert_eq!(
            secret,
            SecretString::from("wJalrXUtnFEMI/K7MDENG".to_owned())
        );
        assert_ne!(secret, SecretString::from("wJalrXUtnFEMI/K7MDENH"));
    }

    #[test]
    fn equality_compares_whole_value() {
        let a = Kek::from_bytes([1; KEY_LEN]);
        let mut other = [1; KEY_LEN];
        assert_eq!(a, Kek::from_bytes(other));
        other[31] = 2;
        assert_ne!(a, Kek::from_bytes(other));
    }

    #[test]
    fn from_slice_rejects_wrong_lengths() {
        assert!(Dek::from_slice(&[0; 31]).is_none());
        assert!(Dek::from_slice(&[0; 33]).is_none());
        assert!(Dek::from_slice(&[0; 32]).is_some());
    }
}
