"""Multipart conformance against treuhand dev, with boto3 and the aws cli: a repeated
CompleteMultipartUpload, UploadPartCopy (with and without x-amz-copy-source-range, and the copy
`aws s3 cp s3://a s3://b` makes of an object over 8 MiB), ListMultipartUploads and S3's part
limits (part numbers 1-10,000, 5 MiB minimum for all but the last part, ascending order).

Every test runs for each tenant env file (SSE-C tenant and holder tenant); those that go
through the aws cli also for each checksum mode. The dev stack keeps S3's 5 MiB minimum part
size, so the parts are real-sized: one 5 MiB buffer is made per module.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import uuid
from pathlib import Path

import botocore.exceptions
import pytest

from s3clients import MIB, AwsCliClient, Boto3Client

PART = 5 * MIB  # S3's minimum size of every part but the last


@pytest.fixture(scope="module")
def big_part() -> bytes:
    """One minimum-size part, shared by the module (random bytes cost time)."""
    return os.urandom(PART)


@pytest.fixture
def s3(target):
    """A boto3 client of the target (request checksums only where required)."""
    return Boto3Client(target, "when_required")


@pytest.fixture
def prefix(s3):
    """A unique key prefix; every object and upload below it is removed afterwards."""
    p = f"e2e/multipart/{uuid.uuid4().hex[:12]}/"
    yield p
    bucket = s3.target.bucket
    for page in s3.s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=p):
        for u in page.get("Uploads", []):
            try:
                s3.s3.abort_multipart_upload(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"])
            except botocore.exceptions.ClientError:
                pass
    listed = s3.s3.list_objects_v2(Bucket=bucket, Prefix=p)
    for o in listed.get("Contents", []):
        s3.s3.delete_object(Bucket=bucket, Key=o["Key"])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def error_of(e: botocore.exceptions.ClientError) -> tuple[int, str]:
    return e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"]


def copy_source_sse(client: Boto3Client) -> dict:
    """The copy-source SSE-C parameters: the source's share (the tenant's own)."""
    if not client.target.sse_c:
        return {}
    return {"CopySourceSSECustomerAlgorithm": "AES256", "CopySourceSSECustomerKey": client.target.share()}


def upload(client: Boto3Client, key: str, parts: list[bytes]) -> tuple[str, list[dict]]:
    """Creates an upload of `key` and uploads `parts`; returns its id and the part list."""
    bucket = client.target.bucket
    upload_id = client.s3.create_multipart_upload(Bucket=bucket, Key=key, **client.sse())["UploadId"]
    done = []
    for number, body in enumerate(parts, start=1):
        r = client.s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body,
                                  **client.sse())
        done.append({"PartNumber": number, "ETag": r["ETag"]})
    return upload_id, done


def complete(client: Boto3Client, key: str, upload_id: str, parts: list[dict]) -> dict:
    return client.s3.complete_multipart_upload(Bucket=client.target.bucket, Key=key, UploadId=upload_id,
                                               MultipartUpload={"Parts": parts}, **client.sse())


# --------------------------------------------------------------------------------------------
# A repeated CompleteMultipartUpload


def test_a_second_complete_answers_200_with_the_same_etag(s3, prefix, big_part):
    key = prefix + "twice.bin"
    upload_id, parts = upload(s3, key, [big_part, b"tail"])
    first = complete(s3, key, upload_id, parts)
    again = complete(s3, key, upload_id, parts)
    assert again["ResponseMetadata"]["HTTPStatusCode"] == 200
    for field in ("ETag", "Bucket", "Key", "Location"):
        assert again.get(field) == first.get(field), field
    assert first["ETag"] == s3.head(key)["etag"]
    assert s3.get(key) == big_part + b"tail"


def test_a_complete_of_an_upload_id_that_never_existed_is_no_such_upload(s3, prefix):
    for upload_id in (uuid.uuid4().hex, "not-an-upload-id"):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            complete(s3, prefix + "never.bin", upload_id, [{"PartNumber": 1, "ETag": '"00"'}])
        assert error_of(e.value) == (404, "NoSuchUpload")


def test_the_aws_cli_completes_an_upload_twice_with_the_same_etag(target, checksum_mode, tmp_path, prefix,
                                                                   big_part):
    cli = AwsCliClient(target, checksum_mode, tmp_path)
    bucket, key = target.bucket, prefix + "cli-twice.bin"
    created = json.loads(cli.run("s3api", "create-multipart-upload", "--bucket", bucket, "--key", key,
                                 *cli.s3api_sse()).stdout)
    upload_id = created["UploadId"]
    parts = []
    for number, body in enumerate([big_part, b"the last part"], start=1):
        f = tmp_path / f"part{number}"
        f.write_bytes(body)
        r = json.loads(cli.run("s3api", "upload-part", "--bucket", bucket, "--key", key, "--upload-id", upload_id,
                               "--part-number", str(number), "--body", str(f), *cli.s3api_sse()).stdout)
        parts.append({"PartNumber": number, "ETag": r["ETag"]})
    layout = tmp_path / "parts.json"
    layout.write_text(json.dumps({"Parts": parts}))
    args = ("s3api", "complete-multipart-upload", "--bucket", bucket, "--key", key, "--upload-id", upload_id,
            "--multipart-upload", f"file://{layout}", *cli.s3api_sse())
    first = json.loads(cli.run(*args).stdout)
    second = json.loads(cli.run(*args).stdout)
    assert second["ETag"] == first["ETag"]
    assert (second["Bucket"], second["Key"]) == (bucket, key)
    assert second.get("Location") == first.get("Location")


# --------------------------------------------------------------------------------------------
# UploadPartCopy


def test_upload_part_copy_with_and_without_a_range_copies_the_plaintext(s3, prefix, big_part):
    bucket = s3.target.bucket
    source, small = prefix + "source.bin", prefix + "small.bin"
    tail = os.urandom(1000)
    s3.put(source, big_part + tail)
    s3.put(small, b"a small object, copied whole as the last part")
    key = prefix + "copied.bin"
    upload_id = s3.s3.create_multipart_upload(Bucket=bucket, Key=key, **s3.sse())["UploadId"]
    # Part 1: the source's last 5 MiB (a range), part 2: the small object whole (no range).
    ranges = [f"bytes=1000-{PART + 999}", None]
    sources = [source, small]
    parts = []
    for number, (src, rng) in enumerate(zip(sources, ranges), start=1):
        kwargs = {"CopySourceRange": rng} if rng else {}
        r = s3.s3.upload_part_copy(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                                   CopySource={"Bucket": bucket, "Key": src}, **kwargs, **s3.sse(),
                                   **copy_source_sse(s3))
        assert r["CopyPartResult"]["ETag"].startswith('"')
        assert "LastModified" in r["CopyPartResult"]
        parts.append({"PartNumber": number, "ETag": r["CopyPartResult"]["ETag"]})
    listed = s3.s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)["Parts"]
    assert [p["Size"] for p in listed] == [PART, len(b"a small object, copied whole as the last part")]
    complete(s3, key, upload_id, parts)
    expected = (big_part + tail)[1000:] + b"a small object, copied whole as the last part"
    assert sha(s3.get(key)) == sha(expected)


def test_a_copied_part_has_the_etag_of_the_same_bytes_uploaded(s3, prefix):
    bucket = s3.target.bucket
    source = prefix + "etag-source.bin"
    body = os.urandom(70_000)
    s3.put(source, body)
    key = prefix + "etag.bin"
    upload_id, parts = upload(s3, key, [body[100:200]])
    copied = s3.s3.upload_part_copy(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=2,
                                    CopySource={"Bucket": bucket, "Key": source}, CopySourceRange="bytes=100-199",
                                    **s3.sse(), **copy_source_sse(s3))
    assert copied["CopyPartResult"]["ETag"] == parts[0]["ETag"]
    s3.s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)


def test_upload_part_copy_checks_copy_source_conditions_and_ranges(s3, prefix):
    bucket = s3.target.bucket
    source = prefix + "cond-source.bin"
    etag = s3.put(source, b"0123456789" * 10)
    key = prefix + "cond.bin"
    upload_id = s3.s3.create_multipart_upload(Bucket=bucket, Key=key, **s3.sse())["UploadId"]

    def copy(**kwargs):
        return s3.s3.upload_part_copy(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1,
                                      CopySource={"Bucket": bucket, "Key": source}, **kwargs, **s3.sse(),
                                      **copy_source_sse(s3))

    assert copy(CopySourceIfMatch=etag)["CopyPartResult"]["ETag"]
    assert copy(CopySourceIfNoneMatch='"0123"')["CopyPartResult"]["ETag"]
    for refused in ({"CopySourceIfMatch": '"0123"'}, {"CopySourceIfNoneMatch": etag},
                    {"CopySourceIfModifiedSince": datetime.datetime.now(datetime.timezone.utc)
                     + datetime.timedelta(days=1)}):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            copy(**refused)
        assert error_of(e.value) == (412, "PreconditionFailed"), refused
    with pytest.raises(botocore.exceptions.ClientError) as e:
        copy(CopySourceRange="bytes=0-100")  # the source has 100 bytes: 0-99
    assert error_of(e.value)[1] == "InvalidRange"
    assert error_of(e.value)[0] in (400, 416)
    for bad in ("x", "bytes=0", "bytes=hello-world", "bytes=0-bar", "bytes=hello-", "bytes=0-2,3-5"):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            copy(CopySourceRange=bad)
        assert error_of(e.value) == (400, "InvalidArgument"), bad
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.s3.upload_part_copy(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1,
                               CopySource={"Bucket": bucket, "Key": prefix + "missing"}, **s3.sse(),
                               **copy_source_sse(s3))
    assert error_of(e.value) == (404, "NoSuchKey")
    s3.s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)


def test_aws_s3_cp_between_keys_copies_a_20mib_object_with_upload_part_copy(target, checksum_mode, tmp_path, s3,
                                                                            prefix, big_part):
    bucket = target.bucket
    body = big_part * 4  # 20 MiB: over the aws cli's 8 MiB multipart_threshold
    src, dst = prefix + "cp-source.bin", prefix + "cp-dest.bin"
    s3.put(src, body)
    cli = AwsCliClient(target, checksum_mode, tmp_path)
    sse = []
    if target.sse_c:
        key_file = f"fileb://{target.share_file}"
        sse = ["--sse-c", "AES256", "--sse-c-key", key_file,
               "--sse-c-copy-source", "AES256", "--sse-c-copy-source-key", key_file]
    p = cli.run("s3", "cp", "--only-show-errors", f"s3://{bucket}/{src}", f"s3://{bucket}/{dst}", *sse,
                debug=True)
    log = p.stderr.decode(errors="replace")
    assert "UploadPartCopy" in log and "CompleteMultipartUpload" in log, "aws s3 cp did not copy in parts"
    assert s3.head(dst)["size"] == len(body)
    out = tmp_path / "back.bin"
    cli.download(dst, out)
    assert sha(out.read_bytes()) == sha(body), "the copy did not read back identically"


# --------------------------------------------------------------------------------------------
# ListMultipartUploads


def test_list_multipart_uploads_by_prefix_delimiter_and_markers(s3, prefix):
    bucket = s3.target.bucket
    keys = ["a", "a", "b", "dir/c", "dir/d"]
    made = []
    for k in keys:
        r = s3.s3.create_multipart_upload(Bucket=bucket, Key=prefix + k, **s3.sse())
        made.append((prefix + k, r["UploadId"]))
    expected = sorted(made)

    whole = s3.s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix)
    listed = [(u["Key"], u["UploadId"]) for u in whole["Uploads"]]
    assert listed == expected, "uploads are listed by key, then upload id"
    assert whole["IsTruncated"] is False
    assert whole["MaxUploads"] == 1000
    now = datetime.datetime.now(datetime.timezone.utc)
    for u in whole["Uploads"]:
        assert abs(u["Initiated"] - now) < datetime.timedelta(hours=1), u["Initiated"]
        assert u["StorageClass"] == "STANDARD"

    folded = s3.s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix, Delimiter="/")
    assert [(u["Key"], u["UploadId"]) for u in folded["Uploads"]] == expected[:3]
    assert [c["Prefix"] for c in folded["CommonPrefixes"]] == [prefix + "dir/"]

    # Two at a time, resuming after NextKeyMarker/NextUploadIdMarker: every upload once.
    pages, seen, markers = 0, [], {}
    while True:
        page = s3.s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix, MaxUploads=2, **markers)
        pages += 1
        seen += [(u["Key"], u["UploadId"]) for u in page.get("Uploads", [])]
        if not page["IsTruncated"]:
            break
        assert len(page["Uploads"]) == 2
        markers = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}
    assert (seen, pages) == (expected, 3)
    # boto3's paginator does the same.
    paged = [(u["Key"], u["UploadId"])
             for p in s3.s3.get_paginator("list_multipart_uploads").paginate(
                 Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": 2})
             for u in p.get("Uploads", [])]
    assert paged == expected
    # A key marker alone skips every upload of that key.
    after_a = s3.s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix, KeyMarker=prefix + "a")
    assert [u["Key"] for u in after_a["Uploads"]] == [prefix + "b", prefix + "dir/c", prefix + "dir/d"]


def test_list_multipart_uploads_url_encodes_keys_on_request(s3, prefix):
    bucket = s3.target.bucket
    key = prefix + "a b+c%d.bin"
    s3.s3.create_multipart_upload(Bucket=bucket, Key=key, **s3.sse())
    plain = s3.s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix)
    assert [u["Key"] for u in plain["Uploads"]] == [key]
    encoded = s3.s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix, EncodingType="url")
    assert encoded["EncodingType"] == "url"
    assert [u["Key"] for u in encoded["Uploads"]] == [prefix + "a%20b%2Bc%25d.bin"]


def test_completed_and_aborted_uploads_are_no_longer_listed(s3, prefix, big_part):
    bucket = s3.target.bucket
    done_id, parts = upload(s3, prefix + "done.bin", [b"only part"])
    aborted = s3.s3.create_multipart_upload(Bucket=bucket, Key=prefix + "aborted.bin", **s3.sse())["UploadId"]
    open_id = s3.s3.create_multipart_upload(Bucket=bucket, Key=prefix + "open.bin", **s3.sse())["UploadId"]
    before = {u["UploadId"] for u in s3.s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix)["Uploads"]}
    assert before == {done_id, aborted, open_id}
    complete(s3, prefix + "done.bin", done_id, parts)
    s3.s3.abort_multipart_upload(Bucket=bucket, Key=prefix + "aborted.bin", UploadId=aborted)
    after = s3.s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", [])
    assert [u["UploadId"] for u in after] == [open_id]


# --------------------------------------------------------------------------------------------
# Part limits


def test_part_numbers_outside_1_to_10000_are_invalid_argument(s3, prefix):
    bucket, key = s3.target.bucket, prefix + "numbers.bin"
    upload_id = s3.s3.create_multipart_upload(Bucket=bucket, Key=key, **s3.sse())["UploadId"]
    for number in (0, 10001):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=b"x", **s3.sse())
        assert error_of(e.value) == (400, "InvalidArgument"), number
        assert "between 1 and 10000" in e.value.response["Error"]["Message"]
    r = s3.s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=10000, Body=b"x", **s3.sse())
    assert r["ETag"]


def test_parts_below_5mib_but_the_last_are_entity_too_small(s3, prefix, big_part):
    key = prefix + "small.bin"
    upload_id, parts = upload(s3, key, [b"x" * 1000, b"y" * 10])
    with pytest.raises(botocore.exceptions.ClientError) as e:
        complete(s3, key, upload_id, parts)
    assert error_of(e.value) == (400, "EntityTooSmall")
    # The refused Complete changed nothing: with part 1 at the minimum size it completes.
    r = s3.s3.upload_part(Bucket=s3.target.bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=big_part,
                          **s3.sse())
    parts[0]["ETag"] = r["ETag"]
    complete(s3, key, upload_id, parts)
    assert sha(s3.get(key)) == sha(big_part + b"y" * 10)


def test_parts_out_of_order_are_invalid_part_order_and_none_malformed_xml(s3, prefix, big_part):
    key = prefix + "order.bin"
    upload_id, parts = upload(s3, key, [big_part, b"tail"])
    with pytest.raises(botocore.exceptions.ClientError) as e:
        complete(s3, key, upload_id, list(reversed(parts)))
    assert error_of(e.value) == (400, "InvalidPartOrder")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        complete(s3, key, upload_id, [])
    assert error_of(e.value) == (400, "MalformedXML")
    complete(s3, key, upload_id, parts)
