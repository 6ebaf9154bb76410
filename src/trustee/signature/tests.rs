//! Tests of [`super::verify`]: the AWS documented example, round trips with the signer,
//! tampers, the time window, and garbage.
use super::*;
use crate::crypto::sigv4::{SigningInput, authorization, presigned_query};

const AK: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// 2013-05-24T00:00:00Z.
const T0: u64 = 1_369_353_600;

fn credential() -> SigV4Credential {
    SigV4Credential {
        access_key_id: AK.into(),
        secret_access_key: SECRET.into(),
    }
}

fn header(name: &str, value: &str) -> (String, String) {
    (name.to_owned(), value.to_owned())
}

/// AWS's documented GET Object example (S3 API reference, "Signature Calculations for
/// the Authorization Header", example 1).
fn aws_example() -> SignedRequest {
    SignedRequest {
        method: "GET".into(),
        path: "/test.txt".into(),
        query: String::new(),
        headers: vec![
            header("host", "examplebucket.s3.amazonaws.com"),
            header("range", "bytes=0-9"),
            header("x-amz-content-sha256", EMPTY_SHA256),
            header("x-amz-date", "20130524T000000Z"),
        ],
        authorization: Some(
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,\
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
                .into(),
        ),
    }
}

/// A PUT signed by our signer, with a copy source and a query.
fn signed_put() -> SignedRequest {
    let extra = [("x-amz-copy-source", "/src/dir/a%20b.txt?versionId=3")];
    let input = SigningInput {
        method: "PUT",
        host: "s3.example:8443",
        path: "/bucket/dir/k%C3%BC%20x",
        query: &[("partNumber", "1"), ("uploadId", "u/1 2")],
        headers: &extra,
        amz_date: "20130524T000000Z",
        region: "eu-central-1",
    };
    let auth = authorization(&input, AK, SECRET);
    SignedRequest {
        method: "PUT".into(),
        path: input.path.into(),
        query: "uploadId=u%2F1%202&partNumber=1".into(),
        headers: vec![
            header("host", input.host),
            header("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
            header("x-amz-date", input.amz_date),
            header("x-amz-copy-source", extra[0].1),
        ],
        authorization: Some(auth),
    }
}

fn presigned(expires: u64) -> SignedRequest {
    let input = SigningInput {
        method: "GET",
        host: "s3.example",
        path: "/bucket/some/key",
        query: &[],
        headers: &[],
        amz_date: "20130524T000000Z",
        region: "us-east-1",
    };
    SignedRequest {
        method: "GET".into(),
        path: input.path.into(),
        query: presigned_query(&input, expires, AK, SECRET),
        headers: vec![header("host", input.host)],
        authorization: None,
    }
}

#[test]
fn the_aws_documented_example_verifies() {
    let covered = verify(&aws_example(), &credential(), T0).expect("verifies");
    assert_eq!(
        covered,
        Covered {
            access_key_id: AK.into(),
            method: "GET".into(),
            // Virtual-hosted: the path's first segment is taken as the bucket; the
            // example's real bucket is in the host, which is out of scope.
            bucket: Some("test.txt".into()),
            key: None,
            copy_source: None,
        }
    );
}

#[test]
fn a_request_from_our_signer_round_trips_with_its_scope() {
    let covered = verify(&signed_put(), &credential(), T0 + 60).expect("verifies");
    assert_eq!(covered.bucket.as_deref(), Some("bucket"));
    assert_eq!(covered.key.as_deref(), Some("dir/kü x"));
    assert_eq!(
        covered.copy_source,
        Some(("src".to_owned(), "dir/a b.txt".to_owned()))
    );
    assert!(covered.covers_object("bucket", "dir/kü x"));
    assert!(covered.covers_object("src", "dir/a b.txt"));
    assert!(!covered.covers_object("bucket", "other"));
}

#[test]
fn a_presigned_url_round_trips_until_it_expires() {
    let url = presigned(3600);
    let covered = verify(&url, &credential(), T0 + 3600).expect("verifies");
    assert_eq!(covered.key.as_deref(), Some("some/key"));
    assert_eq!(
        verify(&url, &credential(), T0 + 3601),
        Err(SignatureError::Expired)
    );
    assert_eq!(
        verify(&url, &credential(), T0 - MAX_SKEW_SECS - 1),
        Err(SignatureError::Expired)
    );
}

#[test]
fn presigned_expiry_must_be_one_second_to_a_week() {
    for expires in [0, MAX_PRESIGNED_EXPIRES_SECS + 1] {
        assert!(matches!(
            verify(&presigned(expires), &credential(), T0),
            Err(SignatureError::Malformed(_))
        ));
    }
    assert!(verify(&presigned(MAX_PRESIGNED_EXPIRES_SECS), &credential(), T0).is_ok());
}

#[test]
fn header_signed_requests_hold_for_fifteen_minutes_either_way() {
    let req = aws_example();
    assert!(verify(&req, &credential(), T0 + MAX_SKEW_SECS).is_ok());
    assert!(verify(&req, &credential(), T0 - MAX_SKEW_SECS).is_ok());
    for now in [T0 + MAX_SKEW_SECS + 1, T0 - MAX_SKEW_SECS - 1, 0, u64::MAX] {
        assert_eq!(
            verify(&req, &credential(), now),
            Err(SignatureError::Expired),
            "{now}"
        );
    }
}

#[test]
fn another_access_key_is_refused_as_such() {
    let other = SigV4Credential {
        access_key_id: "AKIAOTHER".into(),
        secret_access_key: SECRET.into(),
    };
    assert_eq!(
        verify(&aws_example(), &other, T0),
        Err(SignatureError::WrongAccessKey)
    );
    assert_eq!(
        verify(&presigned(60), &other, T0),
        Err(SignatureError::WrongAccessKey)
    );
}

#[test]
fn the_wrong_secret_is_a_mismatch() {
    let wrong = SigV4Credential {
        access_key_id: AK.into(),
        secret_access_key: "not the secret".into(),
    };
    assert_eq!(
        verify(&aws_example(), &wrong, T0),
        Err(SignatureError::Mismatch)
    );
}

/// Every field of a signed request, changed alone, makes it fail.
#[test]
fn every_single_field_tamper_is_refused() {
    type Tamper = fn(&mut SignedRequest);
    let tampers: [(&str, Tamper); 12] = [
        ("method", |r| r.method = "DELETE".into()),
        ("path", |r| r.path = "/bucket/dir/other".into()),
        ("bucket", |r| r.path = "/bucket2/dir/k%C3%BC%20x".into()),
        ("query value", |r| {
            r.query = "uploadId=u%2F1%202&partNumber=2".into()
        }),
        ("query added", |r| r.query.push_str("&versionId=1")),
        ("host", |r| r.headers[0].1 = "evil.example".into()),
        ("payload", |r| r.headers[1].1 = EMPTY_SHA256.into()),
        ("date", |r| r.headers[2].1 = "20130524T000001Z".into()),
        ("copy source", |r| r.headers[3].1 = "/src/other".into()),
        ("header dropped", |r| {
            r.headers.remove(3);
        }),
        ("signature", |r| {
            if let Some(a) = r.authorization.as_mut() {
                let last = a.pop().map_or('0', |c| if c == '0' { '1' } else { '0' });
                a.push(last);
            }
        }),
        ("signed headers", |r| {
            if let Some(a) = r.authorization.as_mut() {
                *a = a.replace(";x-amz-copy-source", "");
            }
        }),
    ];
    assert!(verify(&signed_put(), &credential(), T0).is_ok());
    for (name, tamper) in tampers {
        let mut req = signed_put();
        tamper(&mut req);
        let result = verify(&req, &credential(), T0);
        assert!(result.is_err(), "{name} tamper accepted");
    }
    let query_tampers: [(&str, &str, &str); 4] = [
        ("X-Amz-Expires=3600", "X-Amz-Expires=7200", "expires"),
        (
            "X-Amz-Date=20130524T000000Z",
            "X-Amz-Date=20130524T000100Z",
            "date",
        ),
        (
            "X-Amz-SignedHeaders=host",
            "X-Amz-SignedHeaders=host%3Brange",
            "headers",
        ),
        ("us-east-1", "us-west-2", "region"),
    ];
    for (from, to, name) in query_tampers {
        let mut url = presigned(3600);
        url.query = url.query.replace(from, to);
        url.headers.push(header("range", "bytes=0-1"));
        assert!(
            verify(&url, &credential(), T0).is_err(),
            "{name} tamper accepted"
        );
    }
    let mut url = presigned(3600);
    url.query.push_str("&x-id=GetObject");
    assert!(verify(&url, &credential(), T0).is_err(), "added parameter");
}

#[test]
fn the_credential_date_must_be_the_request_date() {
    let mut req = aws_example();
    if let Some(a) = req.authorization.as_mut() {
        *a = a.replace("/20130524/", "/20130523/");
    }
    assert!(matches!(
        verify(&req, &credential(), T0),
        Err(SignatureError::Malformed(_))
    ));
}

#[test]
fn header_whitespace_is_canonicalized_as_sigv4_says() {
    let mut req = aws_example();
    req.headers[1].1 = "  bytes=0-9 ".into();
    req.headers[0].0 = "Host".into();
    assert!(verify(&req, &credential(), T0).is_ok());
}

#[test]
fn sigv2_and_other_schemes_are_malformed() {
    for auth in [
        "AWS AKIAIOSFODNN7EXAMPLE:frJIUN8DYpKDtOLCwo//yllqDzg=",
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request",
        "AWS4-HMAC-SHA256 Credential=a, Credential=b, SignedHeaders=host, Signature=00",
        "Bearer x",
    ] {
        let mut req = aws_example();
        req.authorization = Some(auth.into());
        assert!(matches!(
            verify(&req, &credential(), T0),
            Err(SignatureError::Malformed(_))
        ));
    }
    let mut req = aws_example();
    req.authorization = None;
    assert!(matches!(
        verify(&req, &credential(), T0),
        Err(SignatureError::Malformed(_))
    ));
}

/// A small deterministic generator (xorshift), so the garbage is the same on every run.
struct Garbage(u64);

impl Garbage {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn text(&mut self, seed: &str) -> String {
        const ALPHABET: &[u8] = b"aZ09/%=&;,.: \t?+-_~\xc3\xbcAWS4-HMAC-SHA256";
        let mut bytes = seed.as_bytes().to_vec();
        for _ in 0..(self.next() % 8) {
            let at = usize::try_from(self.next() % (bytes.len() as u64 + 1)).unwrap_or(0);
            match self.next() % 3 {
                0 if at < bytes.len() => {
                    bytes.remove(at);
                }
                1 => bytes.truncate(at),
                _ => {
                    let pick = usize::try_from(self.next() % ALPHABET.len() as u64).unwrap_or(0);
                    bytes.insert(at, ALPHABET[pick]);
                }
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[test]
fn garbage_never_panics() {
    let mut g = Garbage(0x9e37_79b9_7f4a_7c15);
    for round in 0..4000 {
        let mut req = if round % 2 == 0 {
            signed_put()
        } else {
            presigned(60)
        };
        req.method = g.text(&req.method);
        req.path = g.text(&req.path);
        req.query = g.text(&req.query);
        for (name, value) in &mut req.headers {
            *name = g.text(name);
            *value = g.text(value);
        }
        req.authorization = req.authorization.as_deref().map(|a| g.text(a));
        let now = g.next() % (T0 * 2);
        let _ = verify(&req, &credential(), now);
    }
    let empty = SignedRequest {
        method: String::new(),
        path: String::new(),
        query: "&&=&X-Amz-Expires=99999999999999999999999".into(),
        headers: Vec::new(),
        authorization: Some(String::new()),
    };
    assert!(verify(&empty, &credential(), 0).is_err());
}
