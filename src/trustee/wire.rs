//! The versioned `/v1` and `/v2` JSON wire types shared by the trustee server, the proxy and the CLI.
//!
//! Secret material appears in exactly two places: the share envelope of an enrollment request
//! and the share of a release response. Both types have a redacting `Debug`.

use serde::{Deserialize, Serialize};

use crate::crypto::shamir::KeyMetadata;

/// Maximum length of the free-text reason of a release, in bytes.
pub const MAX_REASON_BYTES: usize = 1024;
/// Maximum length of a request id, in bytes.
pub const MAX_REQUEST_ID_BYTES: usize = 128;
/// Maximum length of an object reference's bucket or key, in bytes.
pub const MAX_OBJECT_REF_BYTES: usize = 1024;

/// Why a share is requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Justification {
    /// The customer reads or writes its own data through the proxy.
    CustomerAccess,
    /// The operator's staff needs the key for maintenance; only under a live emergency grant.
    OperatorMaintenance,
    /// A legal request (court order, authority).
    LegalRequest,
    /// Re-wrapping data keys under a new tenant key version.
    KeyRotation,
}

impl Justification {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Justification::CustomerAccess => "customer_access",
            Justification::OperatorMaintenance => "operator_maintenance",
            Justification::LegalRequest => "legal_request",
            Justification::KeyRotation => "key_rotation",
        }
    }
}

/// The object a release is for (optional, for the log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectRef {
    /// Bucket name.
    pub bucket: String,
    /// Object key.
    pub key: String,
}

/// Body of `POST /v1/tenants/{tenant}/keys/{version}/release`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    /// Why the share is needed.
    pub justification: Justification,
    /// Free text, at most [`MAX_REASON_BYTES`].
    #[serde(default)]
    pub reason: String,
    /// The caller's request id, for correlating log entries (1..=128 bytes).
    pub request_id: String,
    /// The object concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectRef>,
}

impl ReleaseRequest {
    /// Checks the length limits.
    ///
    /// # Errors
    /// A message naming the field that is out of bounds.
    pub fn validate(&self) -> Result<(), String> {
        if self.reason.len() > MAX_REASON_BYTES {
            return Err(format!(
                "reason is {} bytes; the limit is {MAX_REASON_BYTES}",
                self.reason.len()
            ));
        }
        validate_request_id(&self.request_id)?;
        if let Some(object) = &self.object {
            if object.bucket.is_empty() || object.bucket.len() > MAX_OBJECT_REF_BYTES {
                return Err(format!(
                    "object.bucket must be 1-{MAX_OBJECT_REF_BYTES} bytes"
                ));
            }
            if object.key.len() > MAX_OBJECT_REF_BYTES {
                return Err(format!(
                    "object.key must be at most {MAX_OBJECT_REF_BYTES} bytes"
                ));
            }
        }
        Ok(())
    }
}

/// Checks a request id: 1..=128 bytes of printable ASCII.
///
/// # Errors
/// A message saying what is wrong.
pub fn validate_request_id(request_id: &str) -> Result<(), String> {
    if request_id.is_empty() || request_id.len() > MAX_REQUEST_ID_BYTES {
        return Err(format!("request_id must be 1-{MAX_REQUEST_ID_BYTES} bytes"));
    }
    if !request_id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("request_id must be printable ASCII without spaces".into());
    }
    Ok(())
}

/// Response of a successful release. Unknown fields are ignored (additive changes stay v1).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseResponse {
    /// Tenant id.
    pub tenant: String,
    /// Key version.
    pub key_version: u32,
    /// The holder name this share was registered under.
    pub holder: String,
    /// The share's x coordinate.
    pub x: u8,
    /// Standard base64 of the 32-byte secret y value.
    pub share: String,
}

impl std::fmt::Debug for ReleaseResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReleaseResponse")
            .field("tenant", &self.tenant)
            .field("key_version", &self.key_version)
            .field("holder", &self.holder)
            .field("x", &self.x)
            .field("share", &"[REDACTED]")
            .finish()
    }
}

impl Drop for ReleaseResponse {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.share);
    }
}

/// A customer's signed S3 request as the proxy received it, forwarded for a strict tenant so
/// that the holder that knows the tenant's S3 secret can check the signature itself
/// (`trustee::signature`). The proxy cannot forge one: it never knows the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedRequest {
    /// HTTP method, upper case.
    pub method: String,
    /// The request path exactly as received (still percent-encoded).
    pub path: String,
    /// The raw query string as received, without `?` (presigned URLs carry the signature here).
    #[serde(default)]
    pub query: String,
    /// Every header the signature names (`SignedHeaders`, or `X-Amz-SignedHeaders` of a
    /// presigned URL), lower-case name and value as received. Always includes `host`.
    pub headers: Vec<(String, String)>,
    /// The `Authorization` header; `None` for a presigned URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<String>,
}

/// The object of an evaluation: bucket, key and the object's random id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluatedObject {
    /// Bucket name.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// Standard base64 of the 32-byte object id (format v3 header).
    pub id: String,
}

/// Body of `POST /v2/tenants/{tenant}/keys/{version}/evaluate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluateRequest {
    /// Why the evaluation is needed.
    pub justification: Justification,
    /// The caller's request id, for correlating log entries (1..=128 bytes).
    pub request_id: String,
    /// The object whose key is being derived; logged with the evaluation.
    pub object: EvaluatedObject,
    /// Free text, at most [`MAX_REASON_BYTES`] (the S3 operation).
    #[serde(default)]
    pub reason: String,
    /// For strict tenants: the customer's signed request that asks for this object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed: Option<SignedRequest>,
}

/// Length of an object id, in bytes.
pub const OBJECT_ID_BYTES: usize = 32;
/// Most bytes of a SigV4 access key id or secret deposited with a holder.
pub const MAX_CREDENTIAL_BYTES: usize = 128;

impl EvaluatedObject {
    /// Checks the bounds (bucket 1..=1024 bytes, key at most 1024 bytes) and decodes the id.
    ///
    /// # Errors
    /// A message naming the field that is wrong.
    pub fn object_id(&self) -> Result<[u8; OBJECT_ID_BYTES], String> {
        use base64::Engine as _;
        if self.bucket.is_empty() || self.bucket.len() > MAX_OBJECT_REF_BYTES {
            return Err(format!(
                "object.bucket must be 1-{MAX_OBJECT_REF_BYTES} bytes"
            ));
        }
        if self.key.len() > MAX_OBJECT_REF_BYTES {
            return Err(format!(
                "object.key must be at most {MAX_OBJECT_REF_BYTES} bytes"
            ));
        }
        let id = base64::engine::general_purpose::STANDARD
            .decode(self.id.as_bytes())
            .map_err(|_| "object.id must be standard base64".to_owned())?;
        <[u8; OBJECT_ID_BYTES]>::try_from(id.as_slice()).map_err(|_| {
            format!(
                "object.id must encode exactly {OBJECT_ID_BYTES} bytes, not {}",
                id.len()
            )
        })
    }
}

impl EvaluateRequest {
    /// Checks the request id, the reason's length and the object ([`EvaluatedObject::object_id`]).
    ///
    /// # Errors
    /// A message naming the field that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        validate_request_id(&self.request_id)?;
        if self.reason.len() > MAX_REASON_BYTES {
            return Err(format!(
                "reason is {} bytes; the limit is {MAX_REASON_BYTES}",
                self.reason.len()
            ));
        }
        self.object.object_id().map(|_| ())
    }
}

impl AuthorizeRequest {
    /// Checks the request id.
    ///
    /// # Errors
    /// A message naming the field that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        validate_request_id(&self.request_id)
    }
}

impl SigV4Credential {
    /// Checks the bounds: an access key id of 1..=128 printable characters and a secret of
    /// 1..=128 bytes. The message never contains the secret.
    ///
    /// # Errors
    /// A message naming the field that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let id = &self.access_key_id;
        if id.is_empty()
            || id.len() > MAX_CREDENTIAL_BYTES
            || !id.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(format!(
                "sigv4.access_key_id must be 1-{MAX_CREDENTIAL_BYTES} printable characters"
            ));
        }
        if self.secret_access_key.is_empty() || self.secret_access_key.len() > MAX_CREDENTIAL_BYTES
        {
            return Err(format!(
                "sigv4.secret_access_key must be 1-{MAX_CREDENTIAL_BYTES} bytes"
            ));
        }
        Ok(())
    }
}

/// Response of a successful evaluation: `Y_i = k_i·P` and the DLEQ proof that the holder
/// used the share behind its registered `K_i`. Public values (one share's worth of one
/// object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvaluateResponse {
    /// Standard base64 of the 32-byte compressed element `Y_i`.
    pub element: String,
    /// Standard base64 of the 64-byte proof (challenge ‖ response).
    pub proof: String,
    /// The holder's x coordinate.
    #[serde(default)]
    pub x: u8,
    /// Sequence number of the audit entry that records the evaluation.
    #[serde(default)]
    pub audit_seq: u64,
}

/// Body of `POST /v2/tenants/{tenant}/authorize`: a strict tenant's request that needs no
/// key (LIST, DELETE, bucket calls) is checked and logged by the holder that knows the
/// tenant's S3 secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeRequest {
    /// The caller's request id (1..=128 bytes).
    pub request_id: String,
    /// The customer's signed request.
    pub signed: SignedRequest,
}

/// Response of a successful authorization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizeResponse {
    /// The access key id the signature was made with.
    pub access_key_id: String,
    /// Sequence number of the audit entry that records the check.
    pub audit_seq: u64,
}

/// Body of `POST /v1/tenants/{tenant}/keys` (enrollment).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The tenant key's public metadata.
    pub metadata: KeyMetadata,
    /// Which holder of `metadata` this service keeps the share of.
    pub holder: String,
    /// The share as a `treuhand-share-v1:` text envelope.
    pub share: String,
    /// An initial policy for the tenant; if absent, an existing policy is kept or the default
    /// (no proxy allowed) applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
    /// Strict tenants: the tenant's S3 access key id and secret, deposited with the holder
    /// that checks the customer's signatures (never with the proxy). Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigv4: Option<SigV4Credential>,
}

/// An S3 access key pair deposited with a signature-checking holder. Secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigV4Credential {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
}

impl std::fmt::Debug for SigV4Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigV4Credential")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[REDACTED]")
            .finish()
    }
}

impl Drop for SigV4Credential {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.secret_access_key);
    }
}

impl std::fmt::Debug for EnrollRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollRequest")
            .field("metadata", &self.metadata)
            .field("holder", &self.holder)
            .field("share", &"[REDACTED]")
            .field("policy", &self.policy)
            .field("sigv4", &self.sigv4)
            .finish()
    }
}

impl Drop for EnrollRequest {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.share);
    }
}

/// Response of a successful enrollment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollResponse {
    /// Tenant id.
    pub tenant: String,
    /// Key version.
    pub key_version: u32,
    /// Holder name.
    pub holder: String,
    /// The holder's x coordinate.
    pub x: u8,
    /// Sequence number of the audit entry that records the deposit.
    pub audit_seq: u64,
}

/// Scope of an emergency grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct GrantScope {
    /// The key version the grant covers; `None` covers every version of the tenant.
    #[serde(default)]
    pub key_version: Option<u32>,
}

/// Body of `POST /v1/tenants/{tenant}/grants` (operator).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    /// The operator's ticket id (1..=128 printable bytes).
    pub ticket: String,
    /// What the grant covers.
    #[serde(default)]
    pub scope: GrantScope,
    /// How long the grant lasts once approved, in seconds.
    pub duration_secs: u64,
    /// Free text, at most [`MAX_REASON_BYTES`].
    #[serde(default)]
    pub reason: String,
}

/// State of an emergency grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantState {
    /// Filed by the operator, waiting for the customer admin.
    Pending,
    /// Approved and live until `expires_ms`.
    Approved,
    /// Expired by itself.
    Expired,
    /// Refused by the customer admin while pending (`POST .../grants/{id}/deny`).
    Denied,
    /// Ended by the customer admin after approval (`POST .../grants/{id}/revoke`); releases
    /// under it stop at once.
    Revoked,
}

/// An emergency access grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Grant id (`g-` + 16 hex digits).
    pub id: String,
    /// Tenant id.
    pub tenant: String,
    /// Operator ticket id.
    pub ticket: String,
    /// Scope.
    pub scope: GrantScope,
    /// Duration once approved, in seconds.
    pub duration_secs: u64,
    /// Free text given by the operator.
    pub reason: String,
    /// Who filed it (`operator:<name>`).
    pub requested_by: String,
    /// When it was filed (Unix ms).
    pub requested_ms: u64,
    /// Current state.
    pub state: GrantState,
    /// Who approved it (`customer:<tenant>`).
    pub approved_by: Option<String>,
    /// When it was approved (Unix ms).
    pub approved_ms: Option<u64>,
    /// When it expires (Unix ms).
    pub expires_ms: Option<u64>,
}

/// Body of `POST /v1/tenants/{tenant}/keys/{version}/shred` (optional).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ShredRequest {
    /// The caller's request id.
    #[serde(default)]
    pub request_id: Option<String>,
}

/// A deletion receipt signed by the trustee.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShredReceipt {
    /// Always `treuhand-shred-receipt-v1`.
    pub kind: String,
    /// Tenant id.
    pub tenant: String,
    /// Key version.
    pub key_version: u32,
    /// Holder whose share was destroyed.
    pub holder: String,
    /// Public fingerprint of the destroyed share (from the metadata).
    pub share_fingerprint: String,
    /// When it was destroyed (Unix ms).
    pub time_ms: u64,
    /// Sequence number of the audit entry recording the shred.
    pub audit_seq: u64,
    /// Hash of that audit entry.
    pub audit_hash: String,
    /// Hex Ed25519 signature over the receipt with `signature` set to "" (see docs).
    pub signature: String,
}

/// Error body of every non-2xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Error class: `denied`, `bad_request`, `not_found`, `shredded`, `conflict`,
    /// `payload_too_large`, `unsupported_media_type`, `method_not_allowed`, `unavailable`,
    /// `internal`.
    pub error: String,
    /// Machine code, e.g. `proxy_not_allowed` or `malformed_json`.
    pub reason: String,
    /// Human text.
    pub message: String,
}

/// Body of `GET /v1/health` and `GET /v1/ready`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthResponse {
    /// `ok` or `unavailable`.
    pub status: String,
    /// Hex Ed25519 public key of this trustee (verifies checkpoints and receipts).
    pub trustee_key: String,
}

/// A token-bucket rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained releases per second (1..=1,000,000).
    pub per_second: u32,
    /// Burst size (1..=10,000,000).
    pub burst: u32,
}

/// A tenant's release policy, set by its customer admin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Proxy identities (the `<name>` of `<name>.proxy.treuhand`) that may ask for releases.
    #[serde(default)]
    pub allowed_proxies: Vec<String>,
    /// Justifications that may be used. `operator_maintenance` additionally needs a live
    /// emergency grant.
    #[serde(default = "default_justifications")]
    pub allowed_justifications: Vec<Justification>,
    /// Rate limit on releases for this tenant (all proxies together).
    #[serde(default = "default_rate_limit")]
    pub rate_limit: RateLimit,
    /// When true, every release is denied with `tenant_suspended`.
    #[serde(default)]
    pub suspended: bool,
}

fn default_justifications() -> Vec<Justification> {
    vec![
        Justification::CustomerAccess,
        Justification::OperatorMaintenance,
    ]
}

fn default_rate_limit() -> RateLimit {
    RateLimit {
        per_second: 2_000,
        burst: 4_000,
    }
}

impl Default for Policy {
    /// No proxy allowed; customer access and (grant-gated) maintenance; 2,000/s, burst 4,000.
    fn default() -> Self {
        Self {
            allowed_proxies: Vec::new(),
            allowed_justifications: default_justifications(),
            rate_limit: default_rate_limit(),
            suspended: false,
        }
    }
}

impl Policy {
    /// Checks bounds.
    ///
    /// # Errors
    /// A message naming the field that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.allowed_proxies.len() > 1024 {
            return Err("allowed_proxies may list at most 1024 identities".into());
        }
        for name in &self.allowed_proxies {
            if name.is_empty() || name.len() > 128 || !name.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!(
                    "allowed_proxies entry {name:?} must be 1-128 printable characters (the <name> of <name>.proxy.treuhand)"
                ));
            }
        }
        if !(1..=1_000_000).contains(&self.rate_limit.per_second) {
            return Err("rate_limit.per_second must be 1..=1000000".into());
        }
        if !(1..=10_000_000).contains(&self.rate_limit.burst) {
            return Err("rate_limit.burst must be 1..=10000000".into());
        }
        Ok(())
    }
}

/// State of one tenant key version at one holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    /// The share is held and evaluations are answered (under the policy).
    Active,
    /// The share was destroyed; a receipt exists.
    Shredded,
    /// The share was handed to the customer admin for a re-deal (`handover`) and is about to be
    /// shredded; this holder answers no more evaluations for it.
    HandedOver,
}

/// One key version as `GET /v1/tenants/{tenant}/keys` reports it (customer admin or operator).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyStatus {
    /// Key version.
    pub key_version: u32,
    /// This service's holder name for the version.
    pub holder: String,
    /// This holder's x.
    pub x: u8,
    /// State of this holder's share.
    pub state: KeyState,
    /// When the share was deposited (Unix ms).
    pub deposited_ms: u64,
    /// The public metadata this holder keeps for the version.
    pub metadata: KeyMetadata,
}

/// Body of `GET /v1/tenants/{tenant}/keys`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysResponse {
    /// Tenant id.
    pub tenant: String,
    /// Every version this holder knows, ascending.
    pub keys: Vec<KeyStatus>,
}

/// Body of `POST /v1/tenants/{tenant}/keys/{version}/handover` (customer admin only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandoverRequest {
    /// Name of the holder that takes over (for the audit entry).
    pub to: String,
    /// The caller's request id.
    #[serde(default)]
    pub request_id: Option<String>,
}

/// Answer of a handover: this holder's share, to the customer admin alone. The holder
/// answers no evaluation of the version afterwards and expects a shred.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandoverResponse {
    /// Tenant id.
    pub tenant: String,
    /// Key version.
    pub key_version: u32,
    /// The departing holder's name.
    pub holder: String,
    /// Its x.
    pub x: u8,
    /// The share as a `treuhand-share-v1:` text envelope. Secret.
    pub share: String,
    /// Sequence number of the audit entry recording the handover.
    pub audit_seq: u64,
}

// The share text is wiped when the answer goes, on both sides (server and customer admin).
impl Drop for HandoverResponse {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        self.share.zeroize();
    }
}

impl std::fmt::Debug for HandoverResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandoverResponse")
            .field("tenant", &self.tenant)
            .field("key_version", &self.key_version)
            .field("holder", &self.holder)
            .field("x", &self.x)
            .field("share", &"[REDACTED]")
            .field("audit_seq", &self.audit_seq)
            .finish()
    }
}

/// Body of `PUT /v1/tenants/{tenant}/keys/{version}/metadata` (customer admin): new public
/// metadata after a hand-over. Accepted only when it keeps the scheme, the tenant key (`K`
/// or the commitment), the threshold, and this holder's name, x and public key, and is
/// consistent by itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataUpdate {
    /// The new metadata.
    pub metadata: KeyMetadata,
}

/// Answer of a metadata update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataUpdated {
    /// Tenant id.
    pub tenant: String,
    /// Key version.
    pub key_version: u32,
    /// Sequence number of the audit entry.
    pub audit_seq: u64,
}

/// What a revocation event revokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationKind {
    /// A key version was shredded (`key_version` set).
    Shred,
    /// A key version was handed over (`key_version` set).
    Handover,
    /// The tenant's policy changed (suspension, proxies, justifications, rate).
    Policy,
    /// An emergency grant was revoked or denied.
    Grant,
}

/// One revocation event (`GET /v1/revocations`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationEvent {
    /// Position in this trustee process's event stream, from 1.
    pub seq: u64,
    /// Tenant concerned.
    pub tenant: String,
    /// Key version concerned, if one.
    pub key_version: Option<u32>,
    /// What changed.
    pub kind: RevocationKind,
}

/// Body of `GET /v1/revocations?epoch=E&after=N&wait_ms=W` (proxy). The call returns at once
/// when events after `N` exist, otherwise when one arrives or after `wait_ms` (at most 30 s)
/// with none.
///
/// `epoch` names the trustee process's stream (events live in memory). When the caller's epoch
/// differs, or `after` is older than the oldest event kept, the answer has `reset: true`: the
/// caller missed events and must drop every cached key of the tenants it serves from this
/// holder, then continue from `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationsResponse {
    /// The stream's epoch (random per trustee process).
    pub epoch: String,
    /// The last event's sequence number (0 if none yet): the next call's `after`.
    pub seq: u64,
    /// True when the caller must resync (see above).
    pub reset: bool,
    /// Events after the caller's `after`, in order, only for tenants whose policy allows the
    /// calling proxy (before or after the change).
    pub events: Vec<RevocationEvent>,
}
