//! Strict tenants: the holder that knows a tenant's S3 secret checks the customer's own SigV4
//! signature on the request the proxy forwards ([`SignedRequest`]), and says what the
//! signature covers. Pure: the caller passes the clock.
//!
//! CONTRACT (issue 12): the strict helper implements this file; the trustee engine calls
//! [`verify`] for `/v2/.../evaluate` (when the holder has a [`SigV4Credential`] for the tenant)
//! and for `/v2/tenants/{t}/authorize`.

use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use super::wire::{SigV4Credential, SignedRequest};
use crate::crypto::sigv4;

/// The longest validity of a presigned URL (7 days), as S3 and the proxy's guard.
const MAX_PRESIGNED_EXPIRES_SECS: u64 = 604_800;

/// How far a header-signed request's `x-amz-date` may be from the holder's clock, as in S3.
pub const MAX_SKEW_SECS: u64 = 15 * 60;

/// What a verified signature covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Covered {
    /// The access key id the request was signed with.
    pub access_key_id: String,
    /// HTTP method, upper case.
    pub method: String,
    /// The addressed bucket, if any (path-style, or virtual-hosted from `host`).
    pub bucket: Option<String>,
    /// The addressed object key (decoded), if any.
    pub key: Option<String>,
    /// A signed `x-amz-copy-source` (bucket, key), if any: the copy's source may be read.
    pub copy_source: Option<(String, String)>,
}

impl Covered {
    /// True when the signed request addresses `bucket`/`key`, as its target or as its
    /// signed copy source.
    pub fn covers_object(&self, bucket: &str, key: &str) -> bool {
        let target = self.bucket.as_deref() == Some(bucket) && self.key.as_deref() == Some(key);
        let source = self
            .copy_source
            .as_ref()
            .is_some_and(|(b, k)| b == bucket && k == key);
        target || source
    }
}

/// Why a signature was refused. The reason codes go into the holder's audit log and its
/// 403 answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The request names another access key than the tenant's.
    #[error("the request is signed with another access key")]
    WrongAccessKey,
    /// Outside the 15-minute window, or a presigned URL past its expiry.
    #[error("the signature has expired or is not yet valid")]
    Expired,
    /// The signature does not verify.
    #[error("the signature does not match")]
    Mismatch,
    /// Not a SigV4 request the holder can check (SigV2, missing fields, a malformed header).
    #[error("malformed signed request: {0}")]
    Malformed(String),
}

impl SignatureError {
    /// The machine reason code.
    pub fn reason(&self) -> &'static str {
        match self {
            SignatureError::WrongAccessKey => "signature_wrong_access_key",
            SignatureError::Expired => "signature_expired",
            SignatureError::Mismatch => "signature_mismatch",
            SignatureError::Malformed(_) => "signature_malformed",
        }
    }
}

/// Verifies `signed` with `credential` at `now_unix` (seconds) and returns what it covers.
///
/// Header-signed requests (`Authorization: AWS4-HMAC-SHA256 ...`) must carry an `x-amz-date`
/// within [`MAX_SKEW_SECS`] of `now_unix`; presigned URLs (`X-Amz-*` in the query) must have
/// an `X-Amz-Expires` in 1..=604800 and not be past it. Only path-style addressing
/// (`/bucket/key`) names the bucket: a virtual-hosted request (`host: bucket.example`) is
/// verified but covers no bucket, so it opens no object.
///
/// # Errors
/// [`SignatureError`]. Never panics: every field is untrusted.
pub fn verify(
    signed: &SignedRequest,
    credential: &SigV4Credential,
    now_unix: u64,
) -> Result<Covered, SignatureError> {
    let request = Canonicalized::of(signed)?;
    if request.access_key_id != credential.access_key_id {
        return Err(SignatureError::WrongAccessKey);
    }
    check_time(request.signed_at, request.presigned.as_ref(), now_unix)?;
    let expected = request.signature_with(&credential.secret_access_key);
    let presented = request.signature.to_ascii_lowercase();
    if !bool::from(expected.as_bytes().ct_eq(presented.as_bytes())) {
        return Err(SignatureError::Mismatch);
    }
    let (raw_path, _) = split_path(&signed.path);
    let (bucket, key) = bucket_and_key(raw_path)?;
    let copy_source = request
        .header("x-amz-copy-source")
        .map(parse_copy_source)
        .transpose()?;
    Ok(Covered {
        access_key_id: request.access_key_id,
        method: request.method,
        bucket,
        key,
        copy_source,
    })
}

/// The signature of `signed` as it was received (same canonical request, date and scope)
/// under another secret: the proxy re-signs a strict tenant's request, once its holder has
/// accepted it, with a key of its own that s3s then checks (see `proxy::strict`). No time
/// or access key check: the holder made those.
///
/// # Errors
/// [`SignatureError::Malformed`] for what [`verify`] could not canonicalize either.
pub fn signature_with(
    signed: &SignedRequest,
    secret_key: &str,
) -> Result<Zeroizing<String>, SignatureError> {
    Ok(Canonicalized::of(signed)?.signature_with(secret_key))
}

/// A signed request taken apart and canonicalized, before any secret is used.
struct Canonicalized {
    access_key_id: String,
    method: String,
    region: String,
    amz_date: String,
    signed_at: u64,
    presigned: Option<Presigned>,
    signature: String,
    headers: Vec<(String, String)>,
    text: String,
}

impl Canonicalized {
    fn of(signed: &SignedRequest) -> Result<Self, SignatureError> {
        let auth = match &signed.authorization {
            Some(header) => parse_authorization(header)?,
            None => parse_presigned(&signed.query)?,
        };
        let scope = parse_scope(&auth.credential)?;
        let names = signed_header_names(&auth.signed_headers)?;
        let headers = collect_headers(signed, &names)?;
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let amz_date = match &auth.presigned {
            Some(p) => p.amz_date.clone(),
            None => header("x-amz-date")
                .ok_or_else(|| malformed("x-amz-date is not signed"))?
                .to_owned(),
        };
        let signed_at =
            sigv4::parse_amz_date(&amz_date).ok_or_else(|| malformed("bad x-amz-date"))?;
        if amz_date.get(..8) != Some(scope.date) {
            return Err(malformed("the credential date is not the request date"));
        }
        let payload_hash = match (header("x-amz-content-sha256"), &auth.presigned) {
            (Some(hash), _) => hash.to_owned(),
            (None, Some(_)) => sigv4::UNSIGNED_PAYLOAD.to_owned(),
            (None, None) => return Err(malformed("x-amz-content-sha256 is not signed")),
        };
        let method = signed.method.to_ascii_uppercase();
        let (raw_path, _) = split_path(&signed.path);
        let uri = sigv4::canonical_uri(raw_path);
        let query_pairs: Vec<(Vec<u8>, Vec<u8>)> = query_pairs(&signed.query)
            .filter(|(name, _)| name.as_slice() != b"X-Amz-Signature")
            .collect();
        let query = sigv4::canonical_query(&query_pairs);
        let canonical = sigv4::CanonicalRequest {
            method: &method,
            uri: &uri,
            query: &query,
            headers: &headers,
            payload_hash: &payload_hash,
        };
        if canonical.signed_headers() != names.join(";") {
            // Unsorted or repeated names: the list S3 signs must be canonical.
            return Err(malformed("SignedHeaders is not in canonical order"));
        }
        let text = canonical.text();
        Ok(Self {
            access_key_id: scope.access_key_id.to_owned(),
            region: scope.region.to_owned(),
            method,
            amz_date,
            signed_at,
            presigned: auth.presigned,
            signature: auth.signature,
            headers,
            text,
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn signature_with(&self, secret_key: &str) -> Zeroizing<String> {
        Zeroizing::new(sigv4::sign_canonical(
            &self.text,
            &self.amz_date,
            &self.region,
            secret_key,
        ))
    }
}

fn malformed(what: &str) -> SignatureError {
    SignatureError::Malformed(what.to_owned())
}

/// The parts of a SigV4 authorization, from the header or from a presigned URL's query.
struct Authorization {
    credential: String,
    signed_headers: String,
    signature: String,
    presigned: Option<Presigned>,
}

struct Presigned {
    amz_date: String,
    expires: u64,
}

/// `AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`, components in any
/// order, separated by commas (spaces optional), each exactly once.
fn parse_authorization(header: &str) -> Result<Authorization, SignatureError> {
    let rest = header
        .trim()
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(|| malformed("not an AWS4-HMAC-SHA256 authorization"))?;
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (name, value) = part
            .trim()
            .split_once('=')
            .ok_or_else(|| malformed("authorization component without ="))?;
        let slot = match name {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => return Err(malformed("unknown authorization component")),
        };
        if slot.replace(value.to_owned()).is_some() {
            return Err(malformed("repeated authorization component"));
        }
    }
    match (credential, signed_headers, signature) {
        (Some(credential), Some(signed_headers), Some(signature)) => Ok(Authorization {
            credential,
            signed_headers,
            signature,
            presigned: None,
        }),
        _ => Err(malformed("incomplete authorization")),
    }
}

/// The `X-Amz-*` parameters of a presigned URL, each exactly once.
fn parse_presigned(query: &str) -> Result<Authorization, SignatureError> {
    const NAMES: [&str; 6] = [
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
    ];
    let mut values: [Option<String>; 6] = Default::default();
    for (name, value) in query_pairs(query) {
        let Some(i) = NAMES.iter().position(|n| n.as_bytes() == name.as_slice()) else {
            continue;
        };
        let value =
            String::from_utf8(value).map_err(|_| malformed("non-UTF-8 authorization value"))?;
        if values[i].replace(value).is_some() {
            return Err(malformed("repeated presigned parameter"));
        }
    }
    let [
        Some(algorithm),
        Some(credential),
        Some(amz_date),
        Some(expires),
        Some(signed_headers),
        Some(signature),
    ] = values
    else {
        return Err(malformed(
            "neither an Authorization header nor a presigned URL",
        ));
    };
    if algorithm != "AWS4-HMAC-SHA256" {
        return Err(malformed("not AWS4-HMAC-SHA256"));
    }
    if expires.is_empty() || !expires.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed("bad X-Amz-Expires"));
    }
    // Too many digits for a u64 is far past the cap.
    let expires = expires.parse::<u64>().unwrap_or(u64::MAX);
    Ok(Authorization {
        credential,
        signed_headers,
        signature,
        presigned: Some(Presigned { amz_date, expires }),
    })
}

/// `AK/YYYYMMDD/region/s3/aws4_request`.
struct Scope<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
}

fn parse_scope(credential: &str) -> Result<Scope<'_>, SignatureError> {
    let parts: Vec<&str> = credential.split('/').collect();
    match parts.as_slice() {
        [access_key_id, date, region, "s3", "aws4_request"]
            if !access_key_id.is_empty() && date.len() == 8 =>
        {
            Ok(Scope {
                access_key_id,
                date,
                region,
            })
        }
        _ => Err(malformed("bad credential scope")),
    }
}

/// The `SignedHeaders` list: lower-case names, `host` among them.
fn signed_header_names(list: &str) -> Result<Vec<String>, SignatureError> {
    let names: Vec<String> = list.split(';').map(str::to_owned).collect();
    if names
        .iter()
        .any(|n| n.is_empty() || n.bytes().any(|b| b.is_ascii_uppercase()))
    {
        return Err(malformed("bad SignedHeaders"));
    }
    if !names.iter().any(|n| n == "host") {
        return Err(malformed("host is not signed"));
    }
    Ok(names)
}

/// The forwarded values of every signed header, canonicalized. A signed header the proxy did
/// not forward is an error (the signature could not match anyway).
fn collect_headers(
    signed: &SignedRequest,
    names: &[String],
) -> Result<Vec<(String, String)>, SignatureError> {
    let present: Vec<(String, String)> = signed
        .headers
        .iter()
        .filter(|(n, _)| names.iter().any(|name| n.eq_ignore_ascii_case(name)))
        .cloned()
        .collect();
    let headers = sigv4::canonical_headers(&present);
    if headers.len() != names.len() {
        return Err(malformed("a signed header is missing"));
    }
    Ok(headers)
}

fn check_time(
    signed_at: u64,
    presigned: Option<&Presigned>,
    now: u64,
) -> Result<(), SignatureError> {
    match presigned {
        None => {
            if signed_at.abs_diff(now) > MAX_SKEW_SECS {
                return Err(SignatureError::Expired);
            }
        }
        Some(p) => {
            if !(1..=MAX_PRESIGNED_EXPIRES_SECS).contains(&p.expires) {
                return Err(malformed("X-Amz-Expires out of range"));
            }
            // Not valid before it was signed (clock skew allowed), nor after it expired.
            if signed_at > now.saturating_add(MAX_SKEW_SECS)
                || now > signed_at.saturating_add(p.expires)
            {
                return Err(SignatureError::Expired);
            }
        }
    }
    Ok(())
}

/// The path and a query if the forwarded `path` still carries one.
fn split_path(path: &str) -> (&str, Option<&str>) {
    match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    }
}

/// Query pairs decoded as s3s decodes them (`+` a space, `%XX` a byte).
fn query_pairs(query: &str) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode_form(name), decode_form(value))
    })
}

fn decode_form(text: &str) -> Vec<u8> {
    sigv4::percent_decode(&text.replace('+', " "))
}

/// Bucket and key of a path-style path, decoded.
fn bucket_and_key(raw_path: &str) -> Result<(Option<String>, Option<String>), SignatureError> {
    let decoded = String::from_utf8(sigv4::percent_decode(raw_path))
        .map_err(|_| malformed("path is not UTF-8"))?;
    let rest = decoded.strip_prefix('/').unwrap_or(&decoded);
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    Ok((some(bucket), some(key)))
}

/// `x-amz-copy-source`: `[/]bucket/key[?versionId=...]`, percent-encoded.
fn parse_copy_source(value: &str) -> Result<(String, String), SignatureError> {
    let value = value.split_once("?versionId=").map_or(value, |(s, _)| s);
    let decoded = String::from_utf8(sigv4::percent_decode(value))
        .map_err(|_| malformed("x-amz-copy-source is not UTF-8"))?;
    let rest = decoded.strip_prefix('/').unwrap_or(&decoded);
    match rest.split_once('/') {
        Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => {
            Ok((bucket.to_owned(), key.to_owned()))
        }
        _ => Err(malformed("bad x-amz-copy-source")),
    }
}

#[cfg(test)]
mod tests;
