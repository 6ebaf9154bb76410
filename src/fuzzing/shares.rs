//! Fuzz target of the share encodings.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::crypto::shamir::{self, ENVELOPE_PREFIX};
use crate::crypto::{Holder, KeyMetadata, ShareEnvelope, envelope};
use crate::proxy::error::ProxyError;
use crate::proxy::service;
use crate::secret::{Share, ShareValue, Tmk};

use super::{Input, VECTOR_TENANT, VECTOR_TMK, VECTOR_VERSION, vector_key};

/// The share encodings: the `treuhand-share-v1:` text envelope (as typed, and with a valid
/// checksum computed here so the fuzzer gets past it), the SSE-C headers that carry a raw share,
/// and combining arbitrary shares against metadata that lists them.
pub fn share_encodings(data: &[u8]) {
    let mut input = Input(data);
    match input.byte() % 4 {
        0 => {
            if let Ok(text) = std::str::from_utf8(input.rest())
                && let Ok(envelope) = ShareEnvelope::parse(text)
            {
                assert_eq!(
                    envelope.encode().as_str(),
                    text.trim(),
                    "the share envelope is malleable"
                );
            }
        }
        1 => {
            let mut payload = input.rest().to_vec();
            payload.extend_from_slice(&shamir::checksum(&payload));
            let mut text = String::from(ENVELOPE_PREFIX);
            URL_SAFE_NO_PAD.encode_string(&payload, &mut text);
            if let Ok(envelope) = ShareEnvelope::parse(&text) {
                assert_eq!(envelope.encode().as_str(), text);
                assert_ne!(envelope.share.x(), 0);
            }
        }
        2 => {
            let presence = input.byte();
            let mut fields = input.rest().split(|b| *b == b'\n');
            let mut field = |bit: u8| {
                let value = fields.next().unwrap_or_default();
                if presence & bit == 0 {
                    None
                } else {
                    Some(String::from_utf8_lossy(value).into_owned())
                }
            };
            let (algorithm, key, key_md5) = (field(1), field(2), field(4));
            let parsed = service::sse_c(algorithm.as_deref(), key.as_deref(), key_md5.as_deref());
            match parsed {
                Ok(Some(raw)) => {
                    assert_eq!(raw.len(), 32);
                    let metadata = fixed_metadata(&[]);
                    let share = shamir::share_from_raw(&metadata, "customer", &raw)
                        .expect("a 32-byte share of a registered holder");
                    assert_eq!(share.x(), 1);
                }
                Ok(None) => assert!(key.is_none()),
                Err(e) => assert!(matches!(e, ProxyError::MalformedShare(_))),
            }
        }
        _ => {
            let threshold = input.byte();
            let mut shares = Vec::new();
            for _ in 0..input.byte() % 6 {
                shares.push(Share::new(
                    input.byte(),
                    ShareValue::from_bytes(input.array()),
                ));
            }
            let metadata = fixed_metadata(&shares);
            let metadata = KeyMetadata {
                threshold,
                ..metadata
            };
            let refs: Vec<&Share> = shares.iter().collect();
            if let Ok(tmk) = shamir::combine(&metadata, &refs) {
                assert_eq!(
                    tmk.expose_secret(),
                    &VECTOR_TMK,
                    "combine returned a key the commitment does not name"
                );
            }
        }
    }
}

/// Metadata for the vector key: holders `customer` (x = 1) and `trustee` (x = 2), or one holder
/// per given share with that share's fingerprint, so the shares pass the fingerprint check and
/// only the commitment stands between them and a key.
fn fixed_metadata(shares: &[Share]) -> KeyMetadata {
    let (_, key) = vector_key();
    let holders = if shares.is_empty() {
        vec![
            Holder {
                name: "customer".into(),
                x: 1,
                fingerprint: "00".repeat(16),
                public_key: String::new(),
            },
            Holder {
                name: "trustee".into(),
                x: 2,
                fingerprint: "00".repeat(16),
                public_key: String::new(),
            },
        ]
    } else {
        shares
            .iter()
            .enumerate()
            .map(|(i, share)| Holder {
                name: format!("holder-{i}"),
                x: share.x(),
                fingerprint: hex::encode(shamir::fingerprint(&key, share)),
                public_key: String::new(),
            })
            .collect()
    };
    let commitment = envelope::commit(&Tmk::from_bytes(VECTOR_TMK), &key).expect("commitment");
    KeyMetadata {
        tenant: VECTOR_TENANT.into(),
        key_version: VECTOR_VERSION,
        threshold: 2,
        holders,
        commitment: hex::encode(commitment.0),
        scheme: shamir::KeyScheme::ShamirTmk,
        public_key: String::new(),
        strict: false,
        allow_trustees_alone: false,
    }
}
