"""Object operations answered as S3 answers them (issue 14, item 2), checked with boto3.

Each test runs per tenant env file x checksum mode (conftest.py), with boto3 only: these pin
response fields that the aws cli only shows as boto3 parsed them. Nothing here depends on the
storage backend (RGW keeps modification times at whole seconds, so dates are compared as
Last-Modified shows them, never with sub-second precision).
"""

from __future__ import annotations

import datetime
import os
import uuid

import botocore.exceptions
import pytest

from s3clients import MIB, Boto3Client

PART = 5 * MIB  # S3's minimum for every part but the last


@pytest.fixture
def s3(target, checksum_mode):
    if target.env.get("TREUHAND_E2E_NO_AWS_CHUNKED") == "1" and checksum_mode == "when_supported" \
            and target.endpoint.startswith("https:"):
        pytest.skip("backend of this adapter env rejects aws-chunked uploads (rgw), as in conftest.py")
    c = Boto3Client(target, checksum_mode)
    c.ensure_bucket()
    return c


@pytest.fixture
def key(request, s3):
    """Makes unique keys for this test and deletes them afterwards."""
    made: list[str] = []
    run = uuid.uuid4().hex[:12]

    def make(suffix: str = "obj") -> str:
        k = f"e2e/conformance/{request.node.originalname}/{run}/{suffix}"
        made.append(k)
        return k

    yield make
    for k in made:
        try:
            s3.s3.delete_object(Bucket=s3.target.bucket, Key=k)
        except botocore.exceptions.ClientError:
            pass


def error_of(excinfo) -> tuple[int, str]:
    r = excinfo.value.response
    return r["ResponseMetadata"]["HTTPStatusCode"], r["Error"].get("Code")


STANDARD = {
    "CacheControl": "max-age=3600, must-revalidate",
    "ContentDisposition": 'attachment; filename="report.pdf"',
    "ContentEncoding": "gzip",
    "ContentLanguage": "de-CH",
    "ContentType": "application/pdf",
    "Expires": datetime.datetime(2031, 5, 6, 7, 8, 9, tzinfo=datetime.timezone.utc),
}
USER = {"owner": "e2e", "mtime": "1700000000.5"}


def assert_as_sent(response: dict, standard: dict = STANDARD, user: dict = USER) -> None:
    for field, value in standard.items():
        assert response.get(field) == value, f"{field}: {response.get(field)!r} != {value!r}"
    assert response.get("Metadata") == user


# ----------------------------------------------------------------------------------------------
# Metadata


def test_put_stores_standard_headers_and_user_metadata_as_sent(s3, key):
    k = key()
    s3.s3.put_object(Bucket=s3.target.bucket, Key=k, Body=b"pdf", Metadata=USER, **STANDARD, **s3.sse())
    assert_as_sent(s3.s3.head_object(Bucket=s3.target.bucket, Key=k, **s3.sse()))
    got = s3.s3.get_object(Bucket=s3.target.bucket, Key=k, **s3.sse())
    assert_as_sent(got)
    assert got["Body"].read() == b"pdf"


def test_create_multipart_upload_stores_standard_headers_and_user_metadata(s3, key):
    k, bucket = key(), s3.target.bucket
    up = s3.s3.create_multipart_upload(Bucket=bucket, Key=k, Metadata=USER, **STANDARD, **s3.sse())
    part = s3.s3.upload_part(Bucket=bucket, Key=k, UploadId=up["UploadId"], PartNumber=1, Body=b"x" * 10,
                             **s3.sse())
    s3.s3.complete_multipart_upload(Bucket=bucket, Key=k, UploadId=up["UploadId"], MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    assert_as_sent(s3.s3.head_object(Bucket=bucket, Key=k, **s3.sse()))


def _copy_sse(s3) -> dict:
    if not s3.target.sse_c:
        return {}
    share = s3.target.share()
    return {"CopySourceSSECustomerAlgorithm": "AES256", "CopySourceSSECustomerKey": share, **s3.sse()}


def test_copy_keeps_metadata_and_replace_takes_the_requests(s3, key):
    src, kept, replaced, bucket = key("src"), key("kept"), key("replaced"), s3.target.bucket
    s3.s3.put_object(Bucket=bucket, Key=src, Body=b"body", Metadata=USER, **STANDARD, **s3.sse())
    s3.s3.copy_object(Bucket=bucket, Key=kept, CopySource={"Bucket": bucket, "Key": src}, **_copy_sse(s3))
    assert_as_sent(s3.s3.head_object(Bucket=bucket, Key=kept, **s3.sse()))

    new_standard = {"CacheControl": "no-store", "ContentType": "text/plain", "ContentLanguage": "fr",
                    "Expires": datetime.datetime(2032, 1, 1, tzinfo=datetime.timezone.utc)}
    new_user = {"replaced": "yes"}
    s3.s3.copy_object(Bucket=bucket, Key=replaced, CopySource={"Bucket": bucket, "Key": src},
                      MetadataDirective="REPLACE", Metadata=new_user, **new_standard, **_copy_sse(s3))
    head = s3.s3.head_object(Bucket=bucket, Key=replaced, **s3.sse())
    assert_as_sent(head, new_standard, new_user)
    assert "ContentDisposition" not in head and "ContentEncoding" not in head, "REPLACE drops the old headers"


def test_a_copy_onto_itself_that_changes_nothing_is_refused_unless_sse_c_or_replace(s3, key):
    # S3 refuses a self-copy without a metadata or encryption change (400 InvalidRequest).
    # SSE-C headers on the destination are an encryption change, so SSE-C tenants may.
    k, bucket = key(), s3.target.bucket
    s3.s3.put_object(Bucket=bucket, Key=k, Body=b"self", Metadata=USER, **s3.sse())
    source = {"Bucket": bucket, "Key": k}
    if s3.target.sse_c:
        s3.s3.copy_object(Bucket=bucket, Key=k, CopySource=source, **_copy_sse(s3))
    else:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.s3.copy_object(Bucket=bucket, Key=k, CopySource=source)
        assert error_of(e) == (400, "InvalidRequest")
        assert "copy an object to itself" in e.value.response["Error"]["Message"]
    s3.s3.copy_object(Bucket=bucket, Key=k, CopySource=source, MetadataDirective="REPLACE",
                      Metadata={"changed": "1"}, **_copy_sse(s3))
    head = s3.s3.head_object(Bucket=bucket, Key=k, **s3.sse())
    assert head["Metadata"] == {"changed": "1"}
    assert s3.s3.get_object(Bucket=bucket, Key=k, **s3.sse())["Body"].read() == b"self"


def test_aws_chunked_upload_encoding_is_not_stored_as_content_encoding(s3, key):
    # boto3 sends `Content-Encoding: aws-chunked` for its streaming uploads (HTTPS,
    # when_supported); that is a transfer encoding, which S3 does not keep.
    k = key()
    s3.s3.put_object(Bucket=s3.target.bucket, Key=k, Body=b"chunked", **s3.sse())
    assert "ContentEncoding" not in s3.s3.head_object(Bucket=s3.target.bucket, Key=k, **s3.sse())
    k2 = key("gzip")
    s3.s3.put_object(Bucket=s3.target.bucket, Key=k2, Body=b"chunked", ContentEncoding="gzip", **s3.sse())
    assert s3.s3.head_object(Bucket=s3.target.bucket, Key=k2, **s3.sse())["ContentEncoding"] == "gzip"


def test_non_ascii_user_metadata_comes_back_rfc2047_encoded(s3, key):
    # boto3 refuses non-ASCII metadata itself; a user sends it MIME-encoded (RFC 2047), and S3
    # returns non-US-ASCII values in that form.
    with pytest.raises(botocore.exceptions.ParamValidationError):
        s3.s3.put_object(Bucket=s3.target.bucket, Key=key("refused"), Body=b"", Metadata={"name": "grüße"})
    k = key()
    encoded = "=?UTF-8?B?Z3LDvMOfZQ==?="  # "grüße"
    s3.s3.put_object(Bucket=s3.target.bucket, Key=k, Body=b"x", Metadata={"name": encoded, "plain": "ascii"},
                     **s3.sse())
    head = s3.s3.head_object(Bucket=s3.target.bucket, Key=k, **s3.sse())
    assert head["Metadata"] == {"name": encoded, "plain": "ascii"}


# ----------------------------------------------------------------------------------------------
# Conditional requests (RFC 9110 §13.2.2 order)


@pytest.fixture
def stored(s3, key):
    """An object with its ETag and Last-Modified, and dates one day either side."""
    k = key()
    s3.s3.put_object(Bucket=s3.target.bucket, Key=k, Body=b"conditional", **s3.sse())
    head = s3.s3.head_object(Bucket=s3.target.bucket, Key=k, **s3.sse())
    lm = head["LastModified"]
    return {"key": k, "etag": head["ETag"], "last_modified": lm,
            "before": lm - datetime.timedelta(days=1), "after": lm + datetime.timedelta(days=1)}


def _get(s3, stored, **conditions):
    return s3.s3.get_object(Bucket=s3.target.bucket, Key=stored["key"], **conditions, **s3.sse())


def _refused(s3, stored, method: str = "get", **conditions) -> tuple[int, dict]:
    call = s3.s3.get_object if method == "get" else s3.s3.head_object
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call(Bucket=s3.target.bucket, Key=stored["key"], **conditions, **s3.sse())
    meta = e.value.response["ResponseMetadata"]
    return meta["HTTPStatusCode"], meta["HTTPHeaders"]


def test_not_modified_carries_etag_and_last_modified(s3, stored):
    for method in ("get", "head"):
        status, headers = _refused(s3, stored, method, IfNoneMatch=stored["etag"])
        assert status == 304, method
        assert headers.get("etag") == stored["etag"], headers
        lm = datetime.datetime.strptime(headers["last-modified"], "%a, %d %b %Y %H:%M:%S GMT")
        assert lm.replace(tzinfo=datetime.timezone.utc) == stored["last_modified"], headers


def test_if_match_mismatch_is_412(s3, stored):
    assert _refused(s3, stored, IfMatch='"00000000000000000000000000000000"')[0] == 412
    assert _get(s3, stored, IfMatch=stored["etag"])["Body"].read() == b"conditional"


def test_if_unmodified_since_before_last_modified_is_412(s3, stored):
    assert _refused(s3, stored, IfUnmodifiedSince=stored["before"])[0] == 412
    assert _get(s3, stored, IfUnmodifiedSince=stored["after"])["Body"].read() == b"conditional"


def test_if_unmodified_since_is_ignored_when_if_match_is_present(s3, stored):
    got = _get(s3, stored, IfMatch=stored["etag"], IfUnmodifiedSince=stored["before"])
    assert got["Body"].read() == b"conditional"
    assert _refused(s3, stored, IfMatch='"0"', IfUnmodifiedSince=stored["after"])[0] == 412


def test_if_none_match_match_is_304_for_get_and_head(s3, stored):
    assert _refused(s3, stored, "get", IfNoneMatch=stored["etag"])[0] == 304
    assert _refused(s3, stored, "head", IfNoneMatch=stored["etag"])[0] == 304
    assert _get(s3, stored, IfNoneMatch='"0"')["Body"].read() == b"conditional"


def test_if_modified_since_not_modified_is_304(s3, stored):
    assert _refused(s3, stored, IfModifiedSince=stored["after"])[0] == 304
    assert _refused(s3, stored, IfModifiedSince=stored["last_modified"])[0] == 304
    assert _get(s3, stored, IfModifiedSince=stored["before"])["Body"].read() == b"conditional"


def test_if_modified_since_is_ignored_when_if_none_match_is_present(s3, stored):
    got = _get(s3, stored, IfNoneMatch='"0"', IfModifiedSince=stored["after"])
    assert got["Body"].read() == b"conditional"
    assert _refused(s3, stored, IfNoneMatch=stored["etag"], IfModifiedSince=stored["before"])[0] == 304


def test_precondition_failure_comes_before_not_modified(s3, stored):
    # If-Match is evaluated first: 412 even though If-None-Match would answer 304.
    assert _refused(s3, stored, IfMatch='"0"', IfNoneMatch=stored["etag"])[0] == 412
    assert _refused(s3, stored, IfUnmodifiedSince=stored["before"], IfModifiedSince=stored["after"])[0] == 412
    # If-Match holds, so If-None-Match decides.
    assert _refused(s3, stored, IfMatch=stored["etag"], IfNoneMatch=stored["etag"])[0] == 304


def test_put_if_none_match_star_does_not_overwrite(s3, key):
    k, bucket = key(), s3.target.bucket
    s3.s3.put_object(Bucket=bucket, Key=k, Body=b"first", IfNoneMatch="*", **s3.sse())
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.s3.put_object(Bucket=bucket, Key=k, Body=b"second", IfNoneMatch="*", **s3.sse())
    assert error_of(e) == (412, "PreconditionFailed")
    assert s3.s3.get_object(Bucket=bucket, Key=k, **s3.sse())["Body"].read() == b"first"


def test_put_if_match_overwrites_only_the_matching_object(s3, key):
    k, bucket = key(), s3.target.bucket
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.s3.put_object(Bucket=bucket, Key=k, Body=b"x", IfMatch='"0"', **s3.sse())
    assert error_of(e) == (404, "NoSuchKey")
    etag = s3.s3.put_object(Bucket=bucket, Key=k, Body=b"first", **s3.sse())["ETag"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.s3.put_object(Bucket=bucket, Key=k, Body=b"second", IfMatch='"00000000000000000000000000000000"',
                         **s3.sse())
    assert error_of(e) == (412, "PreconditionFailed")
    s3.s3.put_object(Bucket=bucket, Key=k, Body=b"second", IfMatch=etag, **s3.sse())
    assert s3.s3.get_object(Bucket=bucket, Key=k, **s3.sse())["Body"].read() == b"second"


# ----------------------------------------------------------------------------------------------
# DeleteObjects


def test_delete_objects_refuses_more_than_1000_keys(s3, key):
    objects = [{"Key": f"e2e/conformance/many/{i}"} for i in range(1001)]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.s3.delete_objects(Bucket=s3.target.bucket, Delete={"Objects": objects})
    assert error_of(e) == (400, "MalformedXML")


def test_delete_objects_reports_each_key(s3, key):
    present, missing, bucket = key("present"), key("missing"), s3.target.bucket
    too_long = "k" * 1025
    s3.s3.put_object(Bucket=bucket, Key=present, Body=b"x", **s3.sse())
    r = s3.s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": present}, {"Key": missing},
                                                                {"Key": too_long}]})
    assert sorted(d["Key"] for d in r.get("Deleted", [])) == sorted([present, missing]), \
        "a missing key is deleted, as on S3"
    errors = r.get("Errors", [])
    assert [(e["Key"], e["Code"]) for e in errors] == [(too_long, "KeyTooLongError")], errors
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.s3.head_object(Bucket=bucket, Key=present, **s3.sse())
    assert error_of(e)[0] == 404


def test_delete_objects_quiet_answers_only_errors(s3, key):
    a, b, bucket = key("a"), key("b"), s3.target.bucket
    for k in (a, b):
        s3.s3.put_object(Bucket=bucket, Key=k, Body=b"x", **s3.sse())
    r = s3.s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": a}, {"Key": b}], "Quiet": True})
    assert r.get("Deleted", []) == [] and r.get("Errors", []) == [], r
    r = s3.s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": a}, {"Key": "q" * 1025}],
                                                    "Quiet": True})
    assert r.get("Deleted", []) == []
    assert [e["Code"] for e in r.get("Errors", [])] == ["KeyTooLongError"]


# ----------------------------------------------------------------------------------------------
# partNumber


@pytest.fixture
def multipart_object(s3, key):
    """A three-part object (5 MiB, 5 MiB, 1 KiB) and its parts."""
    k, bucket = key("multipart"), s3.target.bucket
    parts = [os.urandom(PART), os.urandom(PART), os.urandom(1024)]
    up = s3.s3.create_multipart_upload(Bucket=bucket, Key=k, **s3.sse())
    done = []
    for n, body in enumerate(parts, start=1):
        r = s3.s3.upload_part(Bucket=bucket, Key=k, UploadId=up["UploadId"], PartNumber=n, Body=body,
                              **s3.sse())
        done.append({"PartNumber": n, "ETag": r["ETag"]})
    r = s3.s3.complete_multipart_upload(Bucket=bucket, Key=k, UploadId=up["UploadId"],
                                        MultipartUpload={"Parts": done})
    return {"key": k, "parts": parts, "etag": r["ETag"]}


def test_part_number_reads_one_part_of_a_multipart_object(s3, multipart_object):
    parts, total = multipart_object["parts"], sum(len(p) for p in multipart_object["parts"])
    start = 0
    for n, body in enumerate(parts, start=1):
        got = s3.s3.get_object(Bucket=s3.target.bucket, Key=multipart_object["key"], PartNumber=n, **s3.sse())
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert got["ContentRange"] == f"bytes {start}-{start + len(body) - 1}/{total}"
        assert got["PartsCount"] == 3
        assert got["ETag"] == multipart_object["etag"], "a part answers the object's ETag"
        assert got["Body"].read() == body, f"part {n}"
        head = s3.s3.head_object(Bucket=s3.target.bucket, Key=multipart_object["key"], PartNumber=n, **s3.sse())
        assert head["ContentLength"] == len(body) and head["PartsCount"] == 3
        # As S3: a HEAD of a selection answers as the GET would, 206 with its Content-Range.
        assert head["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert head["ContentRange"] == got["ContentRange"]
        start += len(body)


def test_part_number_beyond_the_parts_is_416_invalid_part_number(s3, multipart_object, key):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.s3.get_object(Bucket=s3.target.bucket, Key=multipart_object["key"], PartNumber=4, **s3.sse())
    assert error_of(e) == (416, "InvalidPartNumber")
    single = key("single")
    s3.s3.put_object(Bucket=s3.target.bucket, Key=single, Body=b"one part", **s3.sse())
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.s3.get_object(Bucket=s3.target.bucket, Key=single, PartNumber=2, **s3.sse())
    assert error_of(e) == (416, "InvalidPartNumber")


def test_part_number_1_of_a_single_part_object_is_the_whole_object(s3, key):
    k = key()
    etag = s3.s3.put_object(Bucket=s3.target.bucket, Key=k, Body=b"whole object", **s3.sse())["ETag"]
    got = s3.s3.get_object(Bucket=s3.target.bucket, Key=k, PartNumber=1, **s3.sse())
    # As S3: a ranged answer of every byte, and no parts count (not a multipart object).
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["ContentRange"] == "bytes 0-11/12"
    assert "PartsCount" not in got
    assert got["ETag"] == etag
    assert got["Body"].read() == b"whole object"


def test_part_number_with_range_is_400_invalid_request(s3, key):
    k = key()
    s3.s3.put_object(Bucket=s3.target.bucket, Key=k, Body=b"0123456789", **s3.sse())
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.s3.get_object(Bucket=s3.target.bucket, Key=k, PartNumber=1, Range="bytes=0-1", **s3.sse())
    assert error_of(e) == (400, "InvalidRequest")


# ----------------------------------------------------------------------------------------------
# Object ACLs


def test_get_object_acl_answers_the_owner_with_full_control(s3, key):
    k = key()
    s3.s3.put_object(Bucket=s3.target.bucket, Key=k, Body=b"x", **s3.sse())
    acl = s3.s3.get_object_acl(Bucket=s3.target.bucket, Key=k)
    owner = acl["Owner"]["ID"]
    assert owner and acl["Owner"]["ID"] == s3.s3.list_buckets()["Owner"]["ID"]
    assert acl["Grants"] == [{"Grantee": {"ID": owner, "DisplayName": acl["Owner"]["DisplayName"],
                                          "Type": "CanonicalUser"}, "Permission": "FULL_CONTROL"}]


def test_put_object_acl_accepts_private_only(s3, key):
    k, bucket = key(), s3.target.bucket
    s3.s3.put_object(Bucket=bucket, Key=k, Body=b"x", **s3.sse())
    s3.s3.put_object_acl(Bucket=bucket, Key=k, ACL="private")
    policy = s3.s3.get_object_acl(Bucket=bucket, Key=k)
    policy.pop("ResponseMetadata")
    s3.s3.put_object_acl(Bucket=bucket, Key=k, AccessControlPolicy=policy)
    for acl in ("public-read", "authenticated-read", "bucket-owner-full-control"):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.s3.put_object_acl(Bucket=bucket, Key=k, ACL=acl)
        assert error_of(e) == (501, "NotImplemented"), acl
    public = {"Owner": policy["Owner"], "Grants": policy["Grants"] + [{
        "Grantee": {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"},
        "Permission": "READ"}]}
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.s3.put_object_acl(Bucket=bucket, Key=k, AccessControlPolicy=public)
    assert error_of(e) == (501, "NotImplemented")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.s3.put_object_acl(Bucket=bucket, Key=k, GrantRead='uri="http://acs.amazonaws.com/groups/global/AllUsers"')
    assert error_of(e) == (501, "NotImplemented")


def test_object_acl_of_a_missing_key_or_bucket_is_404(s3, key):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.s3.get_object_acl(Bucket=s3.target.bucket, Key=key("missing"))
    assert error_of(e) == (404, "NoSuchKey")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.s3.put_object_acl(Bucket=s3.target.bucket, Key=key("missing"), ACL="private")
    assert error_of(e) == (404, "NoSuchKey")
    missing_bucket = f"no-such-bucket-{uuid.uuid4().hex[:12]}"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.s3.get_object_acl(Bucket=missing_bucket, Key="k")
    assert error_of(e) == (404, "NoSuchBucket")


def test_an_error_document_names_the_request_id_of_its_header(s3, key):
    bodies: list[bytes] = []

    def keep_body(response_dict, **_):
        bodies.append(response_dict["body"])

    s3.s3.meta.events.register("before-parse.s3.GetObject", keep_body)
    try:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.s3.get_object(Bucket=s3.target.bucket, Key=key("missing"), **s3.sse())
    finally:
        s3.s3.meta.events.unregister("before-parse.s3.GetObject", keep_body)
    assert error_of(e) == (404, "NoSuchKey")
    header = e.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-request-id"]
    assert header and bodies, "the error had a request id header and a body"
    assert f"<RequestId>{header}</RequestId>".encode() in bodies[-1], bodies[-1]


def test_a_head_with_a_range_answers_206_with_the_content_range(s3, key):
    k = key()
    s3.s3.put_object(Bucket=s3.target.bucket, Key=k, Body=b"0123456789", **s3.sse())
    head = s3.s3.head_object(Bucket=s3.target.bucket, Key=k, Range="bytes=2-5", **s3.sse())
    assert head["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert (head["ContentLength"], head["ContentRange"]) == (4, "bytes 2-5/10")
    whole = s3.s3.head_object(Bucket=s3.target.bucket, Key=k, **s3.sse())
    assert whole["ResponseMetadata"]["HTTPStatusCode"] == 200 and "ContentRange" not in whole
