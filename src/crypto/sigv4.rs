//! AWS Signature Version 4 for S3 requests, as pure functions: the bench load generator signs
//! its requests with it, and a strict tenant's holder verifies the customer's signature with
//! the same canonical-request builder ([`CanonicalRequest`], `trustee::signature`). The proxy
//! verifies its ordinary tenants' SigV4 through s3s, not here.
//!
//! Payloads are sent as `UNSIGNED-PAYLOAD`, which S3 allows over TLS and which keeps the
//! signer from hashing gigabytes of benchmark data.

use ring::{digest, hmac};

/// What a signature covers.
#[derive(Debug)]
pub struct SigningInput<'a> {
    /// HTTP method, upper case.
    pub method: &'a str,
    /// `host[:port]` exactly as sent in the Host header.
    pub host: &'a str,
    /// The absolute path, already percent-encoded as it goes on the wire.
    pub path: &'a str,
    /// Query parameters (unencoded names and values are encoded here), any order.
    pub query: &'a [(&'a str, &'a str)],
    /// Extra headers to sign (lower-case names), e.g. `range`, `x-amz-server-side-encryption-*`.
    pub headers: &'a [(&'a str, &'a str)],
    /// `YYYYMMDDTHHMMSSZ`.
    pub amz_date: &'a str,
    /// Region, e.g. `us-east-1`.
    pub region: &'a str,
}

/// The payload hash value for unsigned payloads.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// Percent-encodes per SigV4 (RFC 3986 unreserved characters stay; `/` stays if `keep_slash`).
pub fn uri_encode(input: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(input.len());
    for b in input.bytes() {
        let unreserved = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~');
        if unreserved || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> hmac::Tag {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
}

/// Decodes `%XX` escapes once (`+` stays a `+`: in a path it is a plus). Invalid escapes stay
/// literal, as S3 takes them. Bytes, because a decoded path need not be UTF-8.
pub fn percent_decode(input: &str) -> Vec<u8> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

/// Percent-encodes raw bytes per SigV4 (see [`uri_encode`]).
fn uri_encode_bytes(input: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(input.len());
    for &b in input {
        let unreserved = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~');
        if unreserved || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The canonical URI of a path as it was sent: decoded once and re-encoded per SigV4, `/`
/// kept. S3 does not encode twice (unlike the other AWS services), so a path the client
/// already encoded its own way (`%2f`, a literal `~`) canonicalizes as the client signed it.
pub fn canonical_uri(raw_path: &str) -> String {
    if raw_path.is_empty() {
        return "/".to_owned();
    }
    uri_encode_bytes(&percent_decode(raw_path), true)
}

/// The canonical query string of decoded `(name, value)` pairs: each encoded per SigV4,
/// sorted by name then value, joined with `&`.
pub fn canonical_query<N: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(N, V)]) -> String {
    let mut encoded: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| {
            (
                uri_encode_bytes(k.as_ref(), false),
                uri_encode_bytes(v.as_ref(), false),
            )
        })
        .collect();
    encoded.sort();
    let parts: Vec<String> = encoded.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.join("&")
}

/// A header value as SigV4 canonicalizes it: trimmed, inner runs of spaces and tabs
/// collapsed to one space.
pub fn canonical_header_value(value: &str) -> String {
    value
        .split([' ', '\t'])
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The parts of a canonical request, once canonicalized (see the helpers above).
#[derive(Debug)]
pub struct CanonicalRequest<'a> {
    /// HTTP method, upper case.
    pub method: &'a str,
    /// From [`canonical_uri`].
    pub uri: &'a str,
    /// From [`canonical_query`].
    pub query: &'a str,
    /// The signed headers: lower-case names with [`canonical_header_value`] values, sorted
    /// by name.
    pub headers: &'a [(String, String)],
    /// The `x-amz-content-sha256` value (or `UNSIGNED-PAYLOAD`).
    pub payload_hash: &'a str,
}

impl CanonicalRequest<'_> {
    /// The `SignedHeaders` list (`host;x-amz-date;...`).
    pub fn signed_headers(&self) -> String {
        let names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        names.join(";")
    }

    /// The canonical request text (AWS's six lines).
    pub fn text(&self) -> String {
        let canonical_headers: String = self
            .headers
            .iter()
            .map(|(k, v)| format!("{k}:{v}\n"))
            .collect();
        format!(
            "{}\n{}\n{}\n{}\n{}\n{}",
            self.method,
            self.uri,
            self.query,
            canonical_headers,
            self.signed_headers(),
            self.payload_hash
        )
    }

    /// The hex SigV4 signature of this request for `amz_date` (`YYYYMMDDTHHMMSSZ`) and the
    /// scope `date/region/s3/aws4_request`. Secret-derived: compare it in constant time.
    pub fn signature(&self, amz_date: &str, region: &str, secret_key: &str) -> String {
        sign(&self.text(), amz_date, region, secret_key).1
    }
}

/// Canonical headers from `(name, value)` pairs: names lower-cased, values canonicalized,
/// repeated names joined with `,` (SigV4), sorted by name.
pub fn canonical_headers(headers: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(headers.len());
    for (k, v) in headers {
        let name = k.to_ascii_lowercase();
        let value = canonical_header_value(v);
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some((_, existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            None => out.push((name, value)),
        }
    }
    out.sort();
    out
}

/// Returns the `Authorization` header value and the list of headers the caller must send
/// (`host`, `x-amz-date`, `x-amz-content-sha256` and the extra headers).
pub fn authorization(input: &SigningInput<'_>, access_key: &str, secret_key: &str) -> String {
    authorization_for_payload(input, UNSIGNED_PAYLOAD, access_key, secret_key)
}

/// [`authorization`] with another `x-amz-content-sha256` value, e.g. `STREAMING-UNSIGNED-PAYLOAD-
/// TRAILER` for an aws-chunked body (the fuzz target of the aws-chunked decoder signs with it).
pub fn authorization_for_payload(
    input: &SigningInput<'_>,
    payload_hash: &str,
    access_key: &str,
    secret_key: &str,
) -> String {
    let mut headers: Vec<(String, String)> = vec![
        ("host".into(), input.host.into()),
        ("x-amz-content-sha256".into(), payload_hash.into()),
        ("x-amz-date".into(), input.amz_date.into()),
    ];
    headers.extend(
        input
            .headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let headers = canonical_headers(&headers);
    let uri = canonical_uri(input.path);
    let query = canonical_query(input.query);
    let request = CanonicalRequest {
        method: input.method,
        uri: &uri,
        query: &query,
        headers: &headers,
        payload_hash,
    };
    let (scope, signature) = sign(&request.text(), input.amz_date, input.region, secret_key);
    format!(
        "AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={}, Signature={signature}",
        request.signed_headers()
    )
}

/// The hex signature of a canonical request text ([`CanonicalRequest::text`]).
/// Secret-derived: compare it in constant time.
pub fn sign_canonical(
    canonical_request: &str,
    amz_date: &str,
    region: &str,
    secret_key: &str,
) -> String {
    sign(canonical_request, amz_date, region, secret_key).1
}

/// Signs a canonical request: returns the credential scope and the hex signature.
fn sign(
    canonical_request: &str,
    amz_date: &str,
    region: &str,
    secret_key: &str,
) -> (String, String) {
    let date = amz_date.get(..8).unwrap_or(amz_date);
    let scope = format!("{date}/{region}/s3/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(digest::digest(
            &digest::SHA256,
            canonical_request.as_bytes()
        ))
    );
    let k_date = hmac_sha256(format!("AWS4{secret_key}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(k_date.as_ref(), region.as_bytes());
    let k_service = hmac_sha256(k_region.as_ref(), b"s3");
    let k_signing = hmac_sha256(k_service.as_ref(), b"aws4_request");
    let signature = hex::encode(hmac_sha256(k_signing.as_ref(), string_to_sign.as_bytes()));
    (scope, signature)
}

/// Seconds since the Unix epoch of an `x-amz-date` (`YYYYMMDDTHHMMSSZ`), or `None` when it is
/// not one (checked field by field; never panics).
pub fn parse_amz_date(value: &str) -> Option<u64> {
    let b = value.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u64> {
        let digits = b.get(range)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    };
    let (year, month, day) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hour, minute, second) = (num(9..11)?, num(11..13)?, num(13..15)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let days_in_month = *month_days.get(usize::try_from(month).ok()?.checked_sub(1)?)?;
    if year < 1970 || day == 0 || day > days_in_month || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let leaps_before = |y: u64| (y - 1) / 4 - (y - 1) / 100 + (y - 1) / 400;
    let days_before_year = (year - 1970) * 365 + leaps_before(year) - leaps_before(1970);
    let days_before_month: u64 = month_days[..usize::try_from(month - 1).ok()?].iter().sum();
    let days = days_before_year + days_before_month + day - 1;
    Some(days * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// The query string of a presigned URL (query-string SigV4, only `host` signed,
/// `UNSIGNED-PAYLOAD`): the `X-Amz-*` parameters in canonical order, then `X-Amz-Signature`.
/// `input.query` and `input.headers` must be empty: a presigned URL here carries nothing else.
/// The tests use it to present URLs signed at any date with any expiry.
pub fn presigned_query(
    input: &SigningInput<'_>,
    expires_secs: u64,
    access_key: &str,
    secret_key: &str,
) -> String {
    let date = input.amz_date.get(..8).unwrap_or(input.amz_date);
    let credential = format!("{access_key}/{date}/{}/s3/aws4_request", input.region);
    let expires = expires_secs.to_string();
    let params = [
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
        ("X-Amz-Credential", credential.as_str()),
        ("X-Amz-Date", input.amz_date),
        ("X-Amz-Expires", expires.as_str()),
        ("X-Amz-SignedHeaders", "host"),
    ];
    // Canonical (sorted) order is also the order on the wire.
    let query = canonical_query(&params);
    let uri = canonical_uri(input.path);
    let headers = canonical_headers(&[("host".to_owned(), input.host.to_owned())]);
    let request = CanonicalRequest {
        method: input.method,
        uri: &uri,
        query: &query,
        headers: &headers,
        payload_hash: UNSIGNED_PAYLOAD,
    };
    let (_, signature) = sign(&request.text(), input.amz_date, input.region, secret_key);
    format!("{query}&X-Amz-Signature={signature}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_aws_documented_get_object_example_shape() {
        // AWS's published GET-object example uses a signed empty payload; with UNSIGNED-PAYLOAD
        // the signature differs, so this pins our own output and the header layout.
        let auth = authorization(
            &SigningInput {
                method: "GET",
                host: "examplebucket.s3.amazonaws.com",
                path: "/test.txt",
                query: &[],
                headers: &[("range", "bytes=0-9")],
                amz_date: "20130524T000000Z",
                region: "us-east-1",
            },
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        );
        assert!(auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature="
        ));
        assert_eq!(auth.rsplit('=').next().map(str::len), Some(64));
    }

    #[test]
    fn canonical_uri_decodes_once_and_reencodes() {
        assert_eq!(canonical_uri("/b/a%20b"), "/b/a%20b");
        // `/` is kept, also where the client escaped it.
        assert_eq!(canonical_uri("/b/a%2fb"), "/b/a/b");
        assert_eq!(canonical_uri("/b/%7Ex"), "/b/~x");
        assert_eq!(canonical_uri("/b/x%zz"), "/b/x%25zz");
        assert_eq!(canonical_uri("/b/x%+1"), "/b/x%25%2B1");
        assert_eq!(canonical_uri(""), "/");
    }

    #[test]
    fn header_values_are_trimmed_and_collapsed() {
        assert_eq!(canonical_header_value("  a   b\t c  "), "a b c");
        let headers = canonical_headers(&[
            ("X-Amz-Meta-A".into(), "1".into()),
            ("host".into(), "h".into()),
            ("x-amz-meta-a".into(), " 2 ".into()),
        ]);
        assert_eq!(
            headers,
            vec![
                ("host".to_owned(), "h".to_owned()),
                ("x-amz-meta-a".to_owned(), "1,2".to_owned())
            ]
        );
    }

    #[test]
    fn amz_dates_parse_to_unix_seconds() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20130524T000000Z"), Some(1_369_353_600));
        assert_eq!(parse_amz_date("20240229T235959Z"), Some(1_709_251_199));
        for bad in [
            "",
            "2013052T000000Z",
            "20130524 000000Z",
            "20130230T000000Z",
            "2013+524T000000Z",
            "20131324T000000Z",
            "19690101T000000Z",
            "20130524T250000Z",
        ] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn uri_encoding_follows_sigv4() {
        assert_eq!(uri_encode("a b/c~d", true), "a%20b/c~d");
        assert_eq!(uri_encode("a/b", false), "a%2Fb");
    }
}
