"""End-to-end: stock boto3 and aws cli against the running treuhand proxy.

Each test runs for both tenants (SSE-C share in the request; share from a customer-run holder),
both clients and the checksum mode(s) chosen in conftest.py.
"""

from __future__ import annotations

import hashlib
import os

import pytest

from s3clients import MIB, S3Failure

# Odd sizes, so that object ends never line up with the proxy's segment size.
SMALL_SIZES = (0, 1, 4097, 300_001)
MULTIPART_SIZE = 20 * MIB


def data(size: int) -> bytes:
    return os.urandom(size)


def sha256(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(MIB), b""):
            h.update(chunk)
    return h.hexdigest()


def test_put_get(client, keys):
    for size in SMALL_SIZES:
        body = data(size)
        key = keys(f"size-{size}")
        etag = client.put(key, body)
        assert etag, "PutObject must return an ETag"
        got = client.get(key)
        assert len(got) == size
        assert got == body, f"{size}-byte object did not round-trip"


def test_put_overwrite(client, keys):
    key = keys()
    client.put(key, b"first version")
    second = data(1000)
    client.put(key, second)
    assert client.get(key) == second
    assert client.head(key)["size"] == len(second)


def test_ranged_get(client, keys):
    size = 300_001
    body = data(size)
    key = keys()
    client.put(key, body)
    # (Range header, expected slice): prefix, single byte, across 64 KiB boundaries, open-ended,
    # suffix, the last byte, the whole object, and an end past the end of the object.
    cases = [
        ("bytes=0-99", body[0:100]),
        ("bytes=12345-12345", body[12345:12346]),
        ("bytes=65530-65545", body[65530:65546]),
        ("bytes=65536-131072", body[65536:131073]),
        ("bytes=100000-", body[100000:]),
        ("bytes=-1000", body[-1000:]),
        (f"bytes={size - 1}-{size - 1}", body[-1:]),
        (f"bytes=0-{size - 1}", body),
        (f"bytes=299000-{size + 5000}", body[299000:]),
    ]
    for header, expected in cases:
        got = client.get(key, range_header=header)
        assert len(got) == len(expected), f"{header}: {len(got)} bytes, expected {len(expected)}"
        assert got == expected, f"{header}: wrong bytes"


def test_head_reports_plaintext_size(client, keys):
    for size in (0, 1, 4097, 300_001):
        key = keys(f"size-{size}")
        client.put(key, data(size))
        h = client.head(key)
        assert h["size"] == size, f"HEAD ContentLength {h['size']} != plaintext size {size}"
        assert h["etag"], "HEAD must return an ETag"


def test_put_with_content_type_and_metadata_reads_them_back(client, keys):
    key = keys()
    body = data(4097)
    metadata = {"mtime": "1700000000.123456789", "owner": "e2e"}
    etag = client.put_with_metadata(key, body, "text/html; charset=utf-8", metadata)
    h = client.head(key)
    assert h["content_type"] == "text/html; charset=utf-8"
    assert h["metadata"] == metadata
    assert h["etag"] == etag
    assert h["size"] == len(body)
    assert client.get(key) == body
    # An object stored without a type still reads back as application/octet-stream.
    plain = keys("plain")
    client.put(plain, b"x")
    assert client.head(plain)["content_type"] == "application/octet-stream"
    assert client.head(plain)["metadata"] == {}


def test_multipart_20mib(client, keys, tmp_path):
    src = tmp_path / "upload.bin"
    with open(src, "wb") as f:
        for _ in range(MULTIPART_SIZE // MIB):
            f.write(os.urandom(MIB))
    key = keys()
    result = client.put_file(key, src)

    # Prove that the client really used multipart (threshold 8 MiB: parts of 8+8+4 MiB).
    if client.kind == "boto3":
        calls = client.calls
        assert "CreateMultipartUpload" in calls and "CompleteMultipartUpload" in calls, calls
        assert calls.count("UploadPart") == 3, calls
    else:
        log = result.stderr.decode(errors="replace")
        assert "CreateMultipartUpload" in log and "CompleteMultipartUpload" in log, "aws s3 cp did not go multipart"

    assert client.head(key)["size"] == MULTIPART_SIZE
    objects, _, _ = client.list(keys.prefix)
    assert objects[key][0] == MULTIPART_SIZE, "listing must show the plaintext size"

    dst = tmp_path / "download.bin"
    client.download(key, dst)  # both clients download > 8 MiB with parallel ranged GETs
    assert dst.stat().st_size == MULTIPART_SIZE
    assert file_sha256(dst) == file_sha256(src), "multipart object did not read back identically"

    # a range across the 8 MiB part boundary
    with open(src, "rb") as f:
        f.seek(8 * MIB - 100)
        expected = f.read(200)
    assert client.get(key, range_header=f"bytes={8 * MIB - 100}-{8 * MIB + 99}") == expected


def test_list_objects_v2_prefix(client, keys):
    sizes = {"a": 10, "b": 0, "c": 4097, "sub/d": 123, "sub/e": 1}
    for name, size in sizes.items():
        client.put(keys(name), data(size))
    outside = keys.prefix.rstrip("/") + "-other"  # shares the parent, not the prefix
    keys.track(outside)
    client.put(outside, b"not in the listing")
    objects, prefixes, _ = client.list(keys.prefix)
    assert {k[len(keys.prefix):]: v[0] for k, v in objects.items()} == sizes, \
        "ListObjectsV2 must return exactly the prefixed keys with plaintext sizes"

    # delimiter: the "sub/" keys fold into one common prefix
    objects, prefixes, _ = client.list(keys.prefix, delimiter="/")
    assert sorted(k[len(keys.prefix):] for k in objects) == ["a", "b", "c"]
    assert prefixes == [keys.prefix + "sub/"]

    # pagination: 5 keys in pages of 2 -> continuation tokens must work
    objects, _, pages = client.list(keys.prefix, page_size=2)
    assert len(objects) == 5
    assert pages >= 3, f"expected at least 3 pages of 2, saw {pages}"


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_list_returns_keys_with_special_characters_exactly(client, keys, api):
    # The SDKs ask for encoding-type=url on their own and decode every listed key, with "+" as
    # a space: a server that sends raw names turns "a+b" into "a b" in the client's listing.
    names = ["a+b", "a b", "100%", "ü/x", "p=q&r"]
    for name in names:
        client.put(keys(name), data(7))
    objects, prefixes, _ = client.list(keys.prefix, api=api)
    assert sorted(k[len(keys.prefix):] for k in objects) == sorted(names)
    # paging (v1 by marker, v2 by continuation token) visits each key once, in two pages or more
    objects, _, pages = client.list(keys.prefix, page_size=2, api=api)
    assert sorted(k[len(keys.prefix):] for k in objects) == sorted(names)
    assert pages >= 3, f"expected at least 3 pages of 2, saw {pages}"
    objects, prefixes, _ = client.list(keys.prefix, delimiter="/", api=api)
    assert prefixes == [keys.prefix + "ü/"]


def test_delete(client, keys):
    key = keys()
    client.put(key, b"short-lived")
    assert key in client.list(keys.prefix)[0]
    client.delete(key)
    with pytest.raises(S3Failure) as e:
        client.head(key)
    assert e.value.status == 404, e.value
    with pytest.raises(S3Failure) as e:
        client.get(key)
    assert e.value.status == 404, e.value
    assert key not in client.list(keys.prefix)[0]


# ----------------------------------------------------------------------------------------------
# SSE-C tenant: the customer share is the SSE-C key. Without it, or with a wrong one, a request
# must fail with a 4xx S3 error (never a 500) and must never return the data.


def _assert_refused(client, excinfo, secret: bytes):
    f = excinfo.value
    assert f.status in (400, 403), f"expected 400 or 403, got {f}"
    assert secret not in f.detail.encode()
    if client.kind == "awscli":
        assert secret not in getattr(client, "last_failed_output", b""), "plaintext was written to the output file"


def _put_secret(client, keys):
    """Stores a recognisable secret under a fresh key; returns the secret and the key."""
    secret = b"TOP-SECRET-" + data(64).hex().encode()
    key = keys()
    client.put(key, secret)
    return secret, key


@pytest.mark.sse_c
def test_sse_c_get_without_key_is_refused(client, keys):
    secret, key = _put_secret(client, keys)
    with pytest.raises(S3Failure) as e:
        client.get(key, no_sse=True)
    _assert_refused(client, e, secret)
    with pytest.raises(S3Failure) as e:
        client.get(key, no_sse=True, range_header="bytes=0-10")
    _assert_refused(client, e, secret)
    with pytest.raises(S3Failure) as e:
        client.head(key, no_sse=True)
    assert e.value.status in (400, 403), e.value
    assert client.get(key) == secret  # still readable with the right share


@pytest.mark.sse_c
def test_sse_c_get_with_wrong_key_is_refused(client, keys):
    secret, key = _put_secret(client, keys)
    wrong = bytearray(client.target.share())
    wrong[0] ^= 0x01  # one bit off
    for bad in (bytes(wrong), os.urandom(32)):
        with pytest.raises(S3Failure) as e:
            client.get(key, sse_key=bad)
        _assert_refused(client, e, secret)
        with pytest.raises(S3Failure) as e:
            client.head(key, sse_key=bad)
        assert e.value.status in (400, 403), e.value


@pytest.mark.sse_c
def test_sse_c_get_with_malformed_key_is_refused(client, keys):
    secret, key = _put_secret(client, keys)
    with pytest.raises(S3Failure) as e:
        client.get(key, sse_key=client.target.share()[:31])  # 31 bytes: not a valid share
    _assert_refused(client, e, secret)


def test_transfers_up_and_down_report_no_checksum_mismatch(client, keys, tmp_path):
    # The ETag is not the plaintext MD5 (docs/proxy.md, "ETag"): no upload or download mode may
    # take it for one. Single PUT and multipart (above the 8 MiB threshold), both directions:
    # `aws s3 sync` for the cli, upload_file/download_file for boto3; the checksum mode
    # (conftest) switches the clients' own checksums on and off.
    files = {"small.bin": data(300_001), "empty.bin": b"", "sub/big.bin": data(9 * MIB)}
    src = tmp_path / "up"
    for name, body in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(body)
    down = tmp_path / "down"
    for name in files:
        keys.track(keys.prefix + name)
    if client.kind == "awscli":
        remote = f"s3://{client.target.bucket}/{keys.prefix}"
        quiet = ("--only-show-errors", *client.s3_sse())
        up = client.run("s3", "sync", str(src), remote, *quiet)
        back = client.run("s3", "sync", remote, str(down), *quiet)
        again = client.run("s3", "sync", str(src), remote, *client.s3_sse())
        assert again.stdout.decode().strip() == "", "a second sync of unchanged files uploads nothing"
        for p in (up, back, again):
            out = (p.stdout + p.stderr).decode(errors="replace")
            assert out.strip() == "", f"the cli reported something: {out[-2000:]}"
    else:
        for name in files:
            client.put_file(keys.prefix + name, src / name)
            (down / name).parent.mkdir(parents=True, exist_ok=True)
            client.download(keys.prefix + name, down / name)
    for name, body in files.items():
        assert sha256((down / name).read_bytes()) == sha256(body), name
