//! Fuzz target of the trustee's JSON bodies.

use base64::Engine as _;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::crypto::shamir;
use crate::crypto::{KeyMetadata, ShareEnvelope};
use crate::trustee::policy::Policy;
use crate::trustee::wire;

use super::Input;

/// Parses `body` as `T` and checks that what it serialises to parses back to the same value.
fn json_round_trip<T>(body: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq,
{
    let value: T = serde_json::from_slice(body).ok()?;
    let text = serde_json::to_vec(&value).expect("a parsed value serialises");
    let again: T = serde_json::from_slice(&text).expect("a serialised value parses back");
    assert!(again == value, "JSON round trip changed the value");
    Some(value)
}

/// The trustee's JSON bodies (`trustee::wire`, `Policy`, `KeyMetadata`): the requests it
/// accepts with the validation the server applies after parsing, and the answers its client
/// parses.
pub fn trustee_json(data: &[u8]) {
    let mut input = Input(data);
    let kind = input.byte();
    let body = input.rest();
    match kind % 12 {
        0 => {
            if let Some(request) = json_round_trip::<wire::ReleaseRequest>(body)
                && request.validate().is_ok()
            {
                assert!(!request.request_id.is_empty());
            }
        }
        1 => {
            // As `enroll` checks it, before anything is stored.
            let Ok(request) = serde_json::from_slice::<wire::EnrollRequest>(body) else {
                return;
            };
            let text = serde_json::to_vec(&request).expect("serialises");
            serde_json::from_slice::<wire::EnrollRequest>(&text).expect("parses back");
            if request.metadata.validate().is_err() {
                return;
            }
            let Some(holder) = request.metadata.holder(&request.holder) else {
                return;
            };
            let Ok(envelope) = ShareEnvelope::parse(&request.share) else {
                return;
            };
            if envelope.share.x() == holder.x {
                let _ = shamir::check_share(&request.metadata, &envelope.share);
            }
            if let Some(policy) = &request.policy {
                let _ = policy.validate();
            }
        }
        2 => {
            json_round_trip::<wire::GrantRequest>(body);
        }
        3 => {
            json_round_trip::<wire::ShredRequest>(body);
        }
        4 => {
            if let Some(policy) = json_round_trip::<Policy>(body) {
                let _ = policy.validate();
            }
        }
        5 => {
            if let Some(metadata) = json_round_trip::<KeyMetadata>(body)
                && metadata.validate().is_ok()
            {
                assert!((2..=255).contains(&usize::from(metadata.threshold)));
                metadata.key_id().expect("validated metadata has a key id");
            }
        }
        6 => {
            if let Some(response) = json_round_trip::<wire::ReleaseResponse>(body) {
                // As the client decodes the share it was sent.
                let _ = base64::engine::general_purpose::STANDARD.decode(&response.share);
            }
        }
        7 => {
            json_round_trip::<wire::EnrollResponse>(body);
        }
        8 => {
            json_round_trip::<wire::Grant>(body);
        }
        9 => {
            json_round_trip::<wire::ShredReceipt>(body);
        }
        10 => {
            json_round_trip::<wire::ErrorBody>(body);
        }
        _ => {
            json_round_trip::<wire::HealthResponse>(body);
        }
    }
}
