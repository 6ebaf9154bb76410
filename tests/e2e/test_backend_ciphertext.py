"""With a real S3 server (Ceph RGW from .ci/ceph.sh) as treuhand's storage backend: objects put
through the proxy reach the backend only as ciphertext, and round-trip through the proxy.

Runs only when TREUHAND_E2E_BACKEND_ENV names the backend's env file (`.ci/ceph.sh` writes
CEPH_DIR/rgw.env; `.ci/e2e.sh --backend CEPH_DIR/rgw.env DEV_DIR` sets it). The check does not
depend on how the proxy lays out objects in the backend: it lists every bucket of the backend
user before and after the PUT, and reads every object that appeared or changed.
"""

from __future__ import annotations

import os
from pathlib import Path

import boto3
import botocore.config
import pytest

from s3clients import read_env_file

BACKEND_ENV = os.environ.get("TREUHAND_E2E_BACKEND_ENV")

pytestmark = pytest.mark.skipif(not BACKEND_ENV, reason="TREUHAND_E2E_BACKEND_ENV not set (no real S3 backend)")


@pytest.fixture(scope="module")
def backend():
    env = read_env_file(Path(BACKEND_ENV))
    return boto3.session.Session(
        aws_access_key_id=env["RGW_ACCESS_KEY_ID"],
        aws_secret_access_key=env["RGW_SECRET_ACCESS_KEY"],
        region_name=env.get("RGW_REGION", "us-east-1"),
    ).client(
        "s3",
        endpoint_url=env["RGW_ENDPOINT"],
        config=botocore.config.Config(request_checksum_calculation="when_required",
                                      s3={"addressing_style": "path"}),
    )


def snapshot(backend) -> dict:
    """{(bucket, key): etag} of everything the backend user can see."""
    seen = {}
    for b in backend.list_buckets().get("Buckets", []):
        for page in backend.get_paginator("list_objects_v2").paginate(Bucket=b["Name"]):
            for o in page.get("Contents", []):
                seen[(b["Name"], o["Key"])] = o.get("ETag")
    return seen


def test_backend_sees_only_ciphertext(client, keys, backend):
    # A plaintext of one 32-byte marker repeated: every plaintext fragment of 63 bytes or more
    # contains the marker, so any leak of plaintext into the backend is found.
    marker = os.urandom(32)
    size = 300_000
    plaintext = (marker * (size // 32 + 1))[:size]
    before = snapshot(backend)
    key = keys()
    client.put(key, plaintext)
    after = snapshot(backend)

    changed = [bk for bk, etag in after.items() if before.get(bk) != etag]
    assert changed, "PUT through the proxy did not write anything to the backend"
    share = client.target.share() if client.target.sse_c else None
    stored = 0
    for bucket, backend_key in changed:
        body = backend.get_object(Bucket=bucket, Key=backend_key)["Body"].read()
        stored += len(body)
        # (pytest.fail rather than assert: the assertion rewrite would print the whole object)
        if marker in body:
            pytest.fail(f"plaintext found in backend object {bucket}/{backend_key}")
        if share and share in body:
            pytest.fail(f"customer share found in backend object {bucket}/{backend_key}")
    assert stored >= size, f"backend holds {stored} new bytes for a {size}-byte object"

    assert client.get(key) == plaintext, "object did not round-trip through the proxy"
