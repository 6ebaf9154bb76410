//! Requests refused before s3s sees them: Signature Version 2 in every form, browser form
//! uploads (POST Object), and presigned URLs valid for more than a week.
//!
//! Also the pure parts of the strict-tenant gate (`super::strict`): which access keys a
//! request names ([`sigv4_access_keys`]) and which payload modes a strict tenant may use
//! ([`check_strict_payload`]), with their refusals.
//!
//! Pure: looks at the request head only (method, URI, headers), never at the body, and
//! depends on nothing but `http`. The server calls [`check`] for every request and answers a
//! [`Refusal`] itself.
//!
//! Why here and not in s3s: s3s 0.14.1 verifies SigV2 (`Authorization: AWS AK:sig`, and
//! `AWSAccessKeyId`/`Signature`/`Expires` in the query) with no date check, a plain `!=`
//! comparison of signatures and no coverage of the body, and it has no switch to turn SigV2
//! off. It also takes any `X-Amz-Expires` that fits a `u32` (136 years). Its checks run in the
//! order POST form, SigV2, SigV4 (`src/ops/signature.rs`), so the tests below mirror how it
//! decides that a request is SigV2.

use std::borrow::Cow;

use http::StatusCode;

/// The longest validity of a presigned URL that S3 accepts (7 days, in seconds).
pub const MAX_PRESIGNED_EXPIRES_SECS: u64 = 604_800;

const SIGV2_MESSAGE: &str =
    "Signature Version 2 is not supported; sign requests with AWS Signature Version 4";
const POST_FORM_MESSAGE: &str = "Browser form uploads (POST Object) are not supported; \
     use PutObject signed with AWS Signature Version 4";
// S3's own wording for this case.
const EXPIRES_MESSAGE: &str = "X-Amz-Expires must be less than a week (in seconds) that is, \
     the given X-Amz-Expires must be less than 604800 seconds";

const STRICT_PAYLOAD_MESSAGE: &str = "This tenant's signatures are checked by its own holder, which \
     cannot check signed payloads: send UNSIGNED-PAYLOAD or STREAMING-UNSIGNED-PAYLOAD-TRAILER over \
     TLS (the default of boto3 and the aws cli over HTTPS)";

/// Why a request is refused: an S3 error code with a fixed message (no request data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: &'static str,
    reason: &'static str,
}

impl Refusal {
    const SIGV2: Self = Self {
        status: StatusCode::FORBIDDEN,
        code: "AccessDenied",
        message: SIGV2_MESSAGE,
        reason: "sigv2",
    };
    const POST_FORM: Self = Self {
        status: StatusCode::NOT_IMPLEMENTED,
        code: "NotImplemented",
        message: POST_FORM_MESSAGE,
        reason: "post_form",
    };
    const EXPIRES: Self = Self {
        status: StatusCode::BAD_REQUEST,
        code: "AuthorizationQueryParametersError",
        message: EXPIRES_MESSAGE,
        reason: "presigned_expires",
    };

    /// A strict tenant's request with a payload its holder cannot check.
    pub(crate) const STRICT_PAYLOAD: Self = Self {
        status: StatusCode::BAD_REQUEST,
        code: "InvalidRequest",
        message: STRICT_PAYLOAD_MESSAGE,
        reason: "strict_signed_payload",
    };
    /// A strict tenant's request its holder refused (or that cannot be forwarded to it).
    pub(crate) const STRICT_DENIED: Self = Self {
        status: StatusCode::FORBIDDEN,
        code: "AccessDenied",
        message: "Access Denied",
        reason: "strict_denied",
    };
    /// A strict tenant's presigned URL that its holder found past its expiry: S3's code and
    /// message for an expired presigned URL.
    pub(crate) const STRICT_EXPIRED: Self = Self {
        status: StatusCode::FORBIDDEN,
        code: "AccessDenied",
        message: "Request has expired",
        reason: "strict_expired",
    };
    /// A strict tenant's header-signed request outside the 15-minute window (S3's answer).
    pub(crate) const STRICT_SKEWED: Self = Self {
        status: StatusCode::FORBIDDEN,
        code: "RequestTimeTooSkewed",
        message: "The difference between the request time and the current time is too large.",
        reason: "strict_skewed",
    };
    /// A strict tenant's request whose signature its holder could not verify (S3's answer).
    pub(crate) const STRICT_MISMATCH: Self = Self {
        status: StatusCode::FORBIDDEN,
        code: "SignatureDoesNotMatch",
        message: "The request signature we calculated does not match the signature you \
                  provided. Check your key and signing method.",
        reason: "strict_mismatch",
    };
    /// A strict tenant's holder could not be asked: fail closed, and let the client retry.
    pub(crate) const STRICT_UNAVAILABLE: Self = Self {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "ServiceUnavailable",
        message: "The tenant's signature-checking holder is unreachable; retry later",
        reason: "strict_holder_unreachable",
    };

    /// The HTTP status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The S3 error code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The human message sent to the client.
    #[must_use]
    pub fn message(&self) -> &'static str {
        self.message
    }

    /// A short fixed name for the refusal (a metrics label value).
    #[must_use]
    pub fn reason(&self) -> &'static str {
        self.reason
    }

    /// The S3 XML error document for this refusal. `request_id` is the proxy's own id (hex).
    #[must_use]
    pub fn to_xml(&self, request_id: &str) -> String {
        // Code and message are constants without XML metacharacters; the request id is
        // escaped anyway so this stays safe if its format changes.
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message>\
             <RequestId>{}</RequestId></Error>",
            self.code,
            self.message,
            escape_xml(request_id)
        )
    }
}

fn escape_xml(text: &str) -> Cow<'_, str> {
    if !text.contains(['<', '>', '&', '"', '\'']) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Checks one request head.
///
/// # Errors
/// A [`Refusal`] for
/// - SigV2 header auth (`Authorization: AWS ...`) and SigV2 query auth (`Signature` or
///   `AWSAccessKeyId` in the query): 403 `AccessDenied`;
/// - a browser form upload (`POST` with `multipart/form-data`): 501 `NotImplemented`. The
///   form's signature fields are in the body, which this check does not read, and s3s accepts
///   SigV2 there too; the proxy does not list POST Object among its operations;
/// - a presigned URL whose `X-Amz-Expires` is above [`MAX_PRESIGNED_EXPIRES_SECS`]: 400
///   `AuthorizationQueryParametersError`, as S3 answers.
pub fn check(parts: &http::request::Parts) -> Result<(), Refusal> {
    for value in parts.headers.get_all(http::header::AUTHORIZATION) {
        if is_sigv2_authorization(value.as_bytes()) {
            return Err(Refusal::SIGV2);
        }
    }
    if parts.method == http::Method::POST
        && parts
            .headers
            .get_all(http::header::CONTENT_TYPE)
            .iter()
            .any(|value| is_form_data(value.as_bytes()))
    {
        return Err(Refusal::POST_FORM);
    }
    if let Some(query) = parts.uri.query() {
        for (name, value) in query_pairs(query) {
            // s3s matches `Signature` exactly; any spelling is refused here, as no S3 operation
            // has a parameter of that name.
            if name.eq_ignore_ascii_case("Signature") || name.eq_ignore_ascii_case("AWSAccessKeyId")
            {
                return Err(Refusal::SIGV2);
            }
            if name.eq_ignore_ascii_case("X-Amz-Expires") && expires_too_long(&value) {
                return Err(Refusal::EXPIRES);
            }
        }
    }
    Ok(())
}

/// The access key ids a SigV4 request names: `Credential=AK/...` of each `Authorization`
/// header, and each `X-Amz-Credential` of a presigned URL. More than one (two headers, or a
/// header and a presigned credential) is ambiguous: which one s3s would take is not the
/// strict gate's guess to make, so it refuses such a request when any of them is strict.
pub fn sigv4_access_keys(parts: &http::request::Parts) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for value in parts.headers.get_all(http::header::AUTHORIZATION) {
        let value = String::from_utf8_lossy(value.as_bytes());
        if let Some(rest) = value.trim_start().strip_prefix("AWS4-HMAC-SHA256") {
            let credential = rest
                .split(',')
                .find_map(|part| part.trim().strip_prefix("Credential="))
                .unwrap_or_default();
            found.push(credential.split('/').next().unwrap_or_default().to_owned());
        }
    }
    if let Some(query) = parts.uri.query() {
        for (name, value) in query_pairs(query) {
            if name == "X-Amz-Credential" {
                found.push(value.split('/').next().unwrap_or_default().to_owned());
            }
        }
    }
    found
}

/// The payload modes a strict tenant's holder can vouch for: `UNSIGNED-PAYLOAD`,
/// `STREAMING-UNSIGNED-PAYLOAD-TRAILER`, no header (a presigned URL), and a hex SHA-256 of
/// the body. The holder checks the signature over the hash it is shown; s3s then checks the
/// body against that hash (it does so for every single-chunk hash, after the gate re-signed
/// the request), as for any tenant. boto3 sends one for CompleteMultipartUpload and other
/// XML bodies even over HTTPS. Signed chunks (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`,
/// ECDSA) chain every chunk's signature to the customer's secret, which neither the proxy nor
/// s3s has, so they cannot be checked here.
///
/// # Errors
/// [`Refusal`] 400 `InvalidRequest` saying to send unsigned payloads over TLS.
pub fn check_strict_payload(parts: &http::request::Parts) -> Result<(), Refusal> {
    let mut values = parts.headers.get_all("x-amz-content-sha256").iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        // No header: a presigned URL (S3 takes it as UNSIGNED-PAYLOAD). Two: s3s refuses.
        return Ok(());
    };
    match value.as_bytes() {
        b"UNSIGNED-PAYLOAD" | b"STREAMING-UNSIGNED-PAYLOAD-TRAILER" => Ok(()),
        hash if hash.len() == 64 && hash.iter().all(u8::is_ascii_hexdigit) => Ok(()),
        _ => Err(Refusal::STRICT_PAYLOAD),
    }
}

/// `AWS <access key>:<signature>` (SigV2); SigV4 starts with `AWS4-HMAC-SHA256 `.
fn is_sigv2_authorization(value: &[u8]) -> bool {
    let value = value.trim_ascii_start();
    value.len() >= 4 && value[..4].eq_ignore_ascii_case(b"AWS ")
}

/// The media type (before any `;` parameter) is `multipart/form-data`, in any case.
fn is_form_data(value: &[u8]) -> bool {
    let essence = value.split(|b| *b == b';').next().unwrap_or_default();
    essence
        .trim_ascii()
        .eq_ignore_ascii_case(b"multipart/form-data")
}

/// A decimal number above the cap. Anything that is not a decimal number is left to s3s,
/// which refuses it (it parses the value as a `u32`).
fn expires_too_long(value: &str) -> bool {
    let value = value.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    // Too many digits for a u64 is far above the cap too.
    value
        .parse::<u64>()
        .map_or(true, |secs| secs > MAX_PRESIGNED_EXPIRES_SECS)
}

/// The `application/x-www-form-urlencoded` pairs of a query, decoded as s3s decodes them
/// (`+` is a space, `%XX` a byte, invalid escapes stay literal, invalid UTF-8 is replaced), so
/// `Sig%6Eature` is seen as `Signature` here as in s3s.
fn query_pairs(query: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode_component(name), decode_component(value))
    })
}

fn decode_component(text: &str) -> Cow<'_, str> {
    if !text.contains(['%', '+']) {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match (
                bytes.get(i + 1).and_then(|b| hex_value(*b)),
                bytes.get(i + 2).and_then(|b| hex_value(*b)),
            ) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut builder = http::Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap_or_default().into_parts().0
    }

    #[test]
    fn sigv4_header_and_presigned_requests_pass() {
        let auth = "AWS4-HMAC-SHA256 Credential=AK/20260101/us-east-1/s3/aws4_request, \
                    SignedHeaders=host, Signature=abc";
        assert_eq!(
            check(&parts("GET", "/b/k", &[("authorization", auth)])),
            Ok(())
        );
        let presigned = "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=604800\
                         &X-Amz-Signature=abc&X-Amz-SignedHeaders=host";
        assert_eq!(check(&parts("GET", presigned, &[])), Ok(()));
        assert_eq!(
            check(&parts("GET", "/b?list-type=2&prefix=a%2Bb", &[])),
            Ok(())
        );
    }

    #[test]
    fn sigv4_access_keys_come_from_the_header_and_the_presigned_credential() {
        let auth = "AWS4-HMAC-SHA256 Credential=AKH/20260101/us-east-1/s3/aws4_request, \
                    SignedHeaders=host, Signature=abc";
        assert_eq!(
            sigv4_access_keys(&parts("GET", "/b/k", &[("authorization", auth)])),
            vec!["AKH"]
        );
        let presigned = "/b/k?X-Amz-Credential=AKQ%2F20260101%2Fus-east-1%2Fs3%2Faws4_request";
        assert_eq!(
            sigv4_access_keys(&parts("GET", presigned, &[])),
            vec!["AKQ"]
        );
        assert_eq!(
            sigv4_access_keys(&parts("GET", presigned, &[("authorization", auth)])).len(),
            2
        );
        assert!(sigv4_access_keys(&parts("GET", "/b/k", &[])).is_empty());
    }

    #[test]
    fn strict_payload_modes_are_the_ones_someone_can_check() {
        let put = |hash: &str, length: &str| {
            parts(
                "PUT",
                "/b/k",
                &[("x-amz-content-sha256", hash), ("content-length", length)],
            )
        };
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        for (hash, length) in [
            ("UNSIGNED-PAYLOAD", "10"),
            ("STREAMING-UNSIGNED-PAYLOAD-TRAILER", "10"),
            (empty, "0"),
            // s3s checks the body against the signed hash.
            (empty, "10"),
        ] {
            assert_eq!(check_strict_payload(&put(hash, length)), Ok(()), "{hash}");
        }
        assert_eq!(check_strict_payload(&parts("GET", "/b/k", &[])), Ok(()));
        for (hash, length) in [
            ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "10"),
            ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", "10"),
            ("STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD", "10"),
            ("unsigned-payload", "10"),
            (&empty[1..], "10"),
        ] {
            let refusal = check_strict_payload(&put(hash, length)).expect_err(hash);
            assert_eq!(refusal.status(), StatusCode::BAD_REQUEST);
            assert!(refusal.message().contains("UNSIGNED-PAYLOAD"));
            assert!(refusal.message().contains("TLS"));
        }
        let chunked = parts(
            "PUT",
            "/b/k",
            &[
                ("x-amz-content-sha256", empty),
                ("transfer-encoding", "chunked"),
            ],
        );
        assert_eq!(check_strict_payload(&chunked), Ok(()));
    }

    #[test]
    fn sigv2_authorization_header_is_refused() {
        for auth in ["AWS AK:c2lnbmF0dXJl", "aws AK:sig", "  AWS AK:sig"] {
            let refusal = check(&parts("GET", "/b/k", &[("authorization", auth)]));
            assert_eq!(refusal, Err(Refusal::SIGV2), "{auth}");
        }
        let refusal =
            check(&parts("GET", "/b/k", &[("authorization", "AWS AK:sig")])).expect_err("refused");
        assert_eq!(refusal.status(), StatusCode::FORBIDDEN);
        assert_eq!(refusal.code(), "AccessDenied");
        assert!(refusal.message().contains("Signature Version 4"));
    }

    #[test]
    fn sigv2_query_parameters_are_refused_in_any_encoding() {
        for uri in [
            "/b/k?AWSAccessKeyId=AK&Expires=1&Signature=abc",
            "/b/k?Signature=abc",
            "/b/k?Sig%6Eature=abc",
            "/b/k?awsaccesskeyid=AK",
            "/b/k?x=1&&Signature",
        ] {
            assert_eq!(check(&parts("GET", uri, &[])), Err(Refusal::SIGV2), "{uri}");
        }
    }

    #[test]
    fn presigned_expiry_above_a_week_is_refused() {
        for expires in [
            "604801",
            "4294967295",
            "99999999999999999999999",
            "%36%30%34%38%30%31",
        ] {
            let uri = format!("/b/k?X-Amz-Expires={expires}&X-Amz-Signature=abc");
            let refusal = check(&parts("GET", &uri, &[])).expect_err(expires);
            assert_eq!(refusal.status(), StatusCode::BAD_REQUEST);
            assert_eq!(refusal.code(), "AuthorizationQueryParametersError");
        }
        for expires in ["1", "604800", "0604800", "-1", "abc", ""] {
            let uri = format!("/b/k?X-Amz-Expires={expires}&X-Amz-Signature=abc");
            assert_eq!(check(&parts("GET", &uri, &[])), Ok(()), "{expires}");
        }
    }

    #[test]
    fn post_form_upload_is_refused_but_other_posts_pass() {
        for content_type in [
            "multipart/form-data; boundary=xyz",
            "Multipart/Form-Data",
            " multipart/form-data ;boundary=x",
        ] {
            let refusal = check(&parts("POST", "/b", &[("content-type", content_type)]));
            assert_eq!(refusal, Err(Refusal::POST_FORM), "{content_type}");
        }
        let delete = parts("POST", "/b?delete", &[("content-type", "application/xml")]);
        assert_eq!(check(&delete), Ok(()));
        let put = parts("PUT", "/b/k", &[("content-type", "multipart/form-data")]);
        assert_eq!(check(&put), Ok(()));
    }

    #[test]
    fn refusal_xml_carries_code_message_and_escaped_request_id() {
        let xml = Refusal::SIGV2.to_xml("AB<&>");
        assert!(xml.contains("<Code>AccessDenied</Code>"));
        assert!(xml.contains(SIGV2_MESSAGE));
        assert!(xml.contains("<RequestId>AB&lt;&amp;&gt;</RequestId>"));
    }

    #[test]
    fn query_components_decode_like_form_urlencoding() {
        assert_eq!(decode_component("a+b%20c"), "a b c");
        assert_eq!(decode_component("100%"), "100%");
        assert_eq!(decode_component("%zz%4"), "%zz%4");
        assert_eq!(decode_component("%FF"), "\u{FFFD}");
    }
}
