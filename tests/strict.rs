//! Strict tenants end to end: boto3 (the customer's own client, with the S3 secret the
//! ceremony generated and the proxy never saw) against the in-process proxy, whose requests
//! for the tenant are checked by the tenant's own holder (`proxy::strict`,
//! `trustee::signature`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;

use support::stack::Enrolled;
use support::strict::strict_stack;

/// Runs `script` with boto3 against `proxy` as (`ak`, `secret`); returns its stdout.
fn boto3(
    enrolled: &Enrolled,
    proxy: &support::Proxy,
    ak: &str,
    secret: &str,
    script: &str,
) -> String {
    let prelude = r#"
import io, os, sys, urllib.request, ssl
import boto3
from botocore.config import Config
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError
s3 = boto3.client("s3", endpoint_url=os.environ["ENDPOINT"], region_name=os.environ["REGION"],
    aws_access_key_id=os.environ["AK"], aws_secret_access_key=os.environ["SECRET"],
    config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
        # boto3 presigns with SigV2 for a custom endpoint unless told; SigV2 is refused.
        signature_version="s3v4"))
def code(call):
    try:
        call()
    except ClientError as e:
        return e.response["Error"]["Code"]
    return "ok"
"#;
    let output = Command::new("python3")
        .arg("-c")
        .arg(format!("{prelude}\n{script}"))
        .env("ENDPOINT", proxy.endpoint())
        .env("REGION", support::REGION)
        .env("AK", ak)
        .env("SECRET", secret)
        .env("AWS_CA_BUNDLE", &enrolled.pki.ca_pem)
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "boto3 script failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn boto3_available() -> bool {
    Command::new("python3")
        .args(["-c", "import boto3"])
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_puts_gets_lists_deletes_and_presigns_as_a_strict_tenant() {
    if !boto3_available() {
        eprintln!("SKIPPED: python3 with boto3 is not installed");
        return;
    }
    let (enrolled, proxy, ak, secret) = strict_stack().await;
    let script = r#"
s3.create_bucket(Bucket="bucket")
modes = []
def record(request, **kwargs):
    value = request.headers.get("x-amz-content-sha256")
    modes.append(value.decode() if isinstance(value, bytes) else value)
s3.meta.events.register("before-send.s3.PutObject", record)
s3.put_object(Bucket="bucket", Key="small.txt", Body=b"hello strict")
# What boto3 sends over HTTPS by default: an aws-chunked body with a checksum trailer, which
# s3s decodes once the gate has re-signed the request.
assert modes == ["STREAMING-UNSIGNED-PAYLOAD-TRAILER"], modes
assert s3.get_object(Bucket="bucket", Key="small.txt")["Body"].read() == b"hello strict"
big = os.urandom(12 * 1024 * 1024 + 5)
s3.upload_fileobj(io.BytesIO(big), "bucket", "dir/big file.bin",
    Config=TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024))
assert s3.get_object(Bucket="bucket", Key="dir/big file.bin")["Body"].read() == big
ranged = s3.get_object(Bucket="bucket", Key="dir/big file.bin", Range="bytes=10-19")["Body"].read()
assert ranged == big[10:20]
keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="bucket")["Contents"])
assert keys == ["dir/big file.bin", "small.txt"], keys
url = s3.generate_presigned_url("get_object", Params={"Bucket": "bucket", "Key": "small.txt"}, ExpiresIn=300)
ctx = ssl.create_default_context(cafile=os.environ["AWS_CA_BUNDLE"])
assert urllib.request.urlopen(url, context=ctx).read() == b"hello strict"
s3.delete_object(Bucket="bucket", Key="small.txt")
assert code(lambda: s3.head_object(Bucket="bucket", Key="small.txt")) in ("404", "NoSuchKey")
print("all ok")
"#;
    let out = boto3(&enrolled, &proxy, &ak, &secret, script);
    assert!(out.contains("all ok"), "{out}");
    proxy.stop().await;
}

fn test_tenant(ak: &str, secret: &str) -> support::TestTenant {
    support::TestTenant {
        id: "strict".into(),
        access_key_id: ak.into(),
        secret_access_key: secret.into(),
        share: None,
    }
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, data))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_or_signed_chunks_are_refused_for_a_strict_tenant() {
    let (enrolled, proxy, ak, secret) = strict_stack().await;
    let raw = support::Raw::new(&proxy, &enrolled.pki);
    let tenant = test_tenant(&ak, &secret);
    raw.create_bucket(&tenant, "bucket").await;
    assert_eq!(raw.get(&tenant, "/bucket", &[]).await.status, 200);
    // The operator's guess at a secret (or any other) is refused by the tenant's holder.
    let guessed = test_tenant(&ak, "not-the-secret");
    let refused = raw.get(&guessed, "/bucket", &[]).await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    // The holder found the signature wrong: S3's answer for that.
    support::assert_text_contains(&refused, "SignatureDoesNotMatch");
    // Signed chunks chain to the customer's secret: nobody here can check them.
    let chunked = [(
        "x-amz-content-sha256",
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD".to_owned(),
    )];
    let response = raw.put(&tenant, "/bucket/k", &chunked, b"x".to_vec()).await;
    assert_eq!(response.status, 400, "{}", response.text());
    support::assert_text_contains(&response, "UNSIGNED-PAYLOAD");
    support::assert_text_contains(&response, "TLS");
    proxy.stop().await;
}

/// The hex payload hash boto3 signs for XML bodies is checked by s3s against the body after
/// the holder accepted the signature: a body that does not match its signed hash is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_match_its_signed_hash_is_refused() {
    let (enrolled, proxy, ak, secret) = strict_stack().await;
    let raw = support::Raw::new(&proxy, &enrolled.pki);
    let tenant = test_tenant(&ak, &secret);
    raw.create_bucket(&tenant, "bucket").await;
    let hash = |body: &[u8]| [("x-amz-content-sha256", sha256_hex(body))];
    let same = raw
        .put(&tenant, "/bucket/h", &hash(b"same"), b"same".to_vec())
        .await;
    assert_eq!(same.status, 200, "{}", same.text());
    let swapped = raw
        .put(&tenant, "/bucket/h", &hash(b"signed"), b"swaps!".to_vec())
        .await;
    assert_ne!(swapped.status, 200, "{}", swapped.text());
    let stored = raw.get(&tenant, "/bucket/h", &[]).await;
    assert_eq!(stored.body, b"same");
    proxy.stop().await;
}
