"""Presigned URLs and anonymous requests answer as S3 does (issue 14, item 4).

- an expired presigned URL: 403 `AccessDenied` "Request has expired";
- a presigned URL with a wrong signature: 403 `SignatureDoesNotMatch`;
- a presigned URL for an access key nobody has: 403 `InvalidAccessKeyId`;
- an unsigned request: 403 `AccessDenied` on every operation, never a 500, never another code,
  whether or not the bucket or key exists;
- presigned PUT, GET and HEAD work; HEAD answers carry no body.

Each runs for both tenants of the dev stack: the SSE-C tenant (signatures checked by s3s in
the proxy) and the strict holder tenant (signatures checked by the customer's holder, whose
refusal the proxy translates into S3's codes). Presigned URLs come from boto3's
`generate_presigned_url`; unsigned requests are plain `http.client` requests over TLS.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import ssl
import time
import urllib.parse
import uuid

import boto3
import botocore.config
import pytest

from s3clients import Target


def _s3(target: Target, access_key: str | None = None, secret: str | None = None):
    return boto3.client(
        "s3",
        endpoint_url=target.endpoint,
        aws_access_key_id=access_key or target.env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=secret or target.env["AWS_SECRET_ACCESS_KEY"],
        region_name=target.region,
        verify=target.ca_bundle,
        config=botocore.config.Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


def _sse_c(target: Target) -> tuple[dict, dict]:
    """(boto3 parameters, raw request headers) of the SSE-C tenant's customer share; empty for
    a holder tenant."""
    if not target.sse_c:
        return {}, {}
    key = target.share()
    params = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}
    headers = {
        "x-amz-server-side-encryption-customer-algorithm": "AES256",
        "x-amz-server-side-encryption-customer-key": base64.b64encode(key).decode(),
        "x-amz-server-side-encryption-customer-key-MD5": base64.b64encode(hashlib.md5(key).digest()).decode(),
    }
    return params, headers


def _request(target: Target, method: str, path_and_query: str, body: bytes | None = None,
             headers: dict | None = None) -> tuple[int, dict, bytes]:
    """One plain HTTPS request (no signature unless the URL carries one)."""
    url = urllib.parse.urlsplit(target.endpoint)
    context = ssl.create_default_context(cafile=target.ca_bundle)
    conn = http.client.HTTPSConnection(url.hostname, url.port, context=context, timeout=30)
    try:
        conn.request(method, path_and_query, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data
    finally:
        conn.close()


def _path(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


def _code(body: bytes) -> str | None:
    text = body.decode("utf-8", "replace")
    start = text.find("<Code>")
    end = text.find("</Code>")
    return text[start + 6:end] if start >= 0 and end > start else None


def _message(body: bytes) -> str | None:
    text = body.decode("utf-8", "replace")
    start = text.find("<Message>")
    end = text.find("</Message>")
    return text[start + 9:end] if start >= 0 and end > start else None


@pytest.fixture
def stored(target: Target):
    """An object in the tenant's bucket (deleted afterwards): (boto3 client, key, data)."""
    s3 = _s3(target)
    try:
        s3.create_bucket(Bucket=target.bucket)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    except Exception:  # noqa: BLE001 - the bucket may exist under another error code
        pass
    key = f"e2e/auth/{uuid.uuid4().hex[:12]}"
    data = b"presigned and anonymous\n" * 10
    params, _ = _sse_c(target)
    s3.put_object(Bucket=target.bucket, Key=key, Body=data, **params)
    yield s3, key, data
    s3.delete_object(Bucket=target.bucket, Key=key)


def test_an_expired_presigned_get_is_access_denied_request_has_expired(target, stored):
    s3, key, _ = stored
    params, headers = _sse_c(target)
    url = s3.generate_presigned_url("get_object", Params={"Bucket": target.bucket, "Key": key, **params},
                                    ExpiresIn=1)
    listing = s3.generate_presigned_url("list_objects_v2", Params={"Bucket": target.bucket}, ExpiresIn=1)
    # Not a timing assertion: the URLs are only used once they are surely past their expiry.
    time.sleep(2.5)
    for method, path, extra in (("GET", _path(url), headers), ("GET", _path(listing), {})):
        status, _, body = _request(target, method, path, headers=extra)
        assert (status, _code(body), _message(body)) == (403, "AccessDenied", "Request has expired"), body


def test_an_expired_presigned_put_stores_nothing(target, stored):
    s3, _, _ = stored
    key = f"e2e/auth/{uuid.uuid4().hex[:12]}-expired-put"
    params, headers = _sse_c(target)
    url = s3.generate_presigned_url("put_object", Params={"Bucket": target.bucket, "Key": key, **params},
                                    ExpiresIn=1)
    time.sleep(2.5)
    status, _, body = _request(target, "PUT", _path(url), body=b"late", headers=headers)
    assert (status, _code(body)) == (403, "AccessDenied"), body
    with pytest.raises(s3.exceptions.ClientError) as refused:
        s3.head_object(Bucket=target.bucket, Key=key, **params)
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_a_presigned_url_with_a_wrong_signature_is_signature_does_not_match(target, stored):
    s3, key, _ = stored
    params, headers = _sse_c(target)
    url = s3.generate_presigned_url("get_object", Params={"Bucket": target.bucket, "Key": key, **params},
                                    ExpiresIn=300)
    head, signature = url.rsplit("X-Amz-Signature=", 1)
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    status, _, body = _request(target, "GET", _path(f"{head}X-Amz-Signature={flipped}"), headers=headers)
    assert (status, _code(body)) == (403, "SignatureDoesNotMatch"), body


def test_a_presigned_url_signed_with_another_secret_is_signature_does_not_match(target, stored):
    _, key, _ = stored
    forged = _s3(target, secret="not-the-tenant-secret-000000000000000000")
    url = forged.generate_presigned_url("list_objects_v2", Params={"Bucket": target.bucket}, ExpiresIn=300)
    status, _, body = _request(target, "GET", _path(url))
    assert (status, _code(body)) == (403, "SignatureDoesNotMatch"), body


def test_a_presigned_url_for_an_unknown_access_key_is_invalid_access_key_id(target, stored):
    _, key, _ = stored
    stranger = _s3(target, access_key="AKIANOSUCHTENANT0000", secret="whatever-secret")
    url = stranger.generate_presigned_url("get_object", Params={"Bucket": target.bucket, "Key": key},
                                          ExpiresIn=300)
    status, _, body = _request(target, "GET", _path(url))
    assert (status, _code(body)) == (403, "InvalidAccessKeyId"), body


def test_presigned_put_then_presigned_get_and_head_round_trip(target, stored):
    s3, _, _ = stored
    key = f"e2e/auth/{uuid.uuid4().hex[:12]}-presigned"
    params, headers = _sse_c(target)
    data = b"uploaded through a presigned URL\n"
    try:
        put = s3.generate_presigned_url("put_object", Params={"Bucket": target.bucket, "Key": key, **params},
                                        ExpiresIn=300)
        status, _, body = _request(target, "PUT", _path(put), body=data, headers=headers)
        assert status == 200, body

        get = s3.generate_presigned_url("get_object", Params={"Bucket": target.bucket, "Key": key, **params},
                                        ExpiresIn=300)
        status, _, body = _request(target, "GET", _path(get), headers=headers)
        assert (status, body) == (200, data)

        head = s3.generate_presigned_url("head_object", Params={"Bucket": target.bucket, "Key": key, **params},
                                         ExpiresIn=300)
        status, response_headers, body = _request(target, "HEAD", _path(head), headers=headers)
        assert (status, body) == (200, b"")
        assert response_headers.get("content-length") == str(len(data))
    finally:
        s3.delete_object(Bucket=target.bucket, Key=key)


def test_head_answers_carry_no_body(target, stored):
    s3, key, _ = stored
    params, headers = _sse_c(target)
    missing = s3.generate_presigned_url(
        "head_object", Params={"Bucket": target.bucket, "Key": key + "-missing", **params}, ExpiresIn=300)
    status, _, body = _request(target, "HEAD", _path(missing), headers=headers)
    assert (status, body) == (404, b"")
    for path in (f"/{target.bucket}/{key}", f"/{target.bucket}", "/no-such-bucket-e2e-auth/k"):
        status, _, body = _request(target, "HEAD", path)
        assert (status, body) == (403, b""), path


# Every operation family an SDK sends, unsigned. `{b}` is the tenant's bucket, `{k}` an
# existing key; a bucket and a key that do not exist must answer the same (S3 does not tell
# an anonymous caller which names exist).
ANONYMOUS = [
    ("list buckets", "GET", "/", None),
    ("create bucket", "PUT", "/e2e-auth-anon-new-bucket", None),
    ("delete bucket", "DELETE", "/{b}", None),
    ("head bucket", "HEAD", "/{b}", None),
    ("list objects v1", "GET", "/{b}", None),
    ("list objects v2", "GET", "/{b}?list-type=2&prefix=e2e/", None),
    ("bucket location", "GET", "/{b}?location", None),
    ("bucket versioning", "GET", "/{b}?versioning", None),
    ("bucket acl", "GET", "/{b}?acl", None),
    ("bucket policy", "GET", "/{b}?policy", None),
    ("list multipart uploads", "GET", "/{b}?uploads", None),
    ("delete objects", "POST", "/{b}?delete", b"<Delete><Object><Key>{k}</Key></Object></Delete>"),
    ("get object", "GET", "/{b}/{k}", None),
    ("get object part", "GET", "/{b}/{k}?partNumber=1", None),
    ("head object", "HEAD", "/{b}/{k}", None),
    ("put object", "PUT", "/{b}/{k}", b"overwritten by nobody"),
    ("copy object", "PUT", "/{b}/{k}-copy", None),
    ("delete object", "DELETE", "/{b}/{k}", None),
    ("object acl", "GET", "/{b}/{k}?acl", None),
    ("create multipart upload", "POST", "/{b}/{k}?uploads", None),
    ("upload part", "PUT", "/{b}/{k}?partNumber=1&uploadId=nosuchupload", b"part"),
    ("list parts", "GET", "/{b}/{k}?uploadId=nosuchupload", None),
    ("complete multipart upload", "POST", "/{b}/{k}?uploadId=nosuchupload",
     b"<CompleteMultipartUpload></CompleteMultipartUpload>"),
    ("abort multipart upload", "DELETE", "/{b}/{k}?uploadId=nosuchupload", None),
    ("get object, no such bucket", "GET", "/e2e-auth-no-such-bucket/{k}", None),
    ("get object, no such key", "GET", "/{b}/{k}-missing", None),
]


@pytest.mark.parametrize("what,method,template,body", ANONYMOUS, ids=[a[0] for a in ANONYMOUS])
def test_an_unsigned_request_is_access_denied(target, stored, what, method, template, body):
    s3, key, data = stored
    path = template.format(b=target.bucket, k=key)
    payload = body.replace(b"{k}", key.encode()) if body else body
    headers = {"x-amz-copy-source": f"/{target.bucket}/{key}"} if what == "copy object" else {}
    status, _, answer = _request(target, method, path, body=payload, headers=headers)
    assert status == 403, (what, status, answer)
    if method != "HEAD":
        assert _code(answer) == "AccessDenied", (what, answer)
    else:
        assert answer == b""
    # Nothing changed: the object is still there with its content.
    params, _ = _sse_c(target)
    assert s3.get_object(Bucket=target.bucket, Key=key, **params)["Body"].read() == data
