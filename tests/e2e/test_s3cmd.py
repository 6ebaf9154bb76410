"""s3cmd (ListObjects v1, its own multipart, an upload MD5 check) against treuhand dev.

s3cmd compares every upload's ETag with the MD5 of what it sent, unless the response says
`x-amz-server-side-encryption: aws:kms` (as S3 does for SSE-KMS objects, whose ETag is not an
MD5 either). Before the proxy said so for holder tenants, s3cmd retried every upload and gave
up. s3cmd has no SSE-C support, so it runs against holder tenants only.

s3cmd comes from PyPI with the other test tools (.ci/requirements.txt).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from s3clients import clean_base_env, write_tree

MIB = 1024 * 1024
FILES = {
    "a+b.txt": b"plus\n",
    "x y/\u00fc.bin": os.urandom(70_000),
    "big.bin": os.urandom(12 * MIB),  # above the 5 MiB chunk size below: multipart
}


def _exe() -> str:
    here = Path(sys.executable).parent / "s3cmd"
    if not here.exists():
        pytest.fail("s3cmd not found next to the test interpreter; run .ci/pyenv.sh")
    return str(here)


def _config(target, tmp_path: Path) -> Path:
    host = target.endpoint.split("://", 1)[1]
    lines = [
        "[default]",
        f"access_key = {target.env['AWS_ACCESS_KEY_ID']}",
        f"secret_key = {target.env['AWS_SECRET_ACCESS_KEY']}",
        f"host_base = {host}",
        f"host_bucket = {host}",  # no %(bucket)s: path-style requests
        f"use_https = {target.endpoint.startswith('https:')}",
        "check_ssl_certificate = True",
        "signature_v2 = False",
        f"bucket_location = {target.region}",
        "multipart_chunk_size_mb = 5",
    ]
    if target.ca_bundle:
        lines.append(f"ca_certs_file = {target.ca_bundle}")
    cfg = tmp_path / "s3cfg"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def _run(cfg: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([_exe(), "-c", str(cfg), *args], env=clean_base_env(),
                       capture_output=True, timeout=300)
    out = (p.stdout + p.stderr).decode(errors="replace")
    if check and p.returncode != 0:
        raise AssertionError(f"s3cmd {' '.join(args)} exited {p.returncode}:\n{out[-3000:]}")
    # s3cmd warns and retries on an MD5 mismatch; with retries that succeed it still exits 0
    assert "MD5 Sums don't match" not in out, f"s3cmd {' '.join(args)}:\n{out[-3000:]}"
    # ... and its download check warns on a mismatch without failing
    assert "MD5 signatures do not match" not in out, f"s3cmd {' '.join(args)}:\n{out[-3000:]}"
    return p


def test_s3cmd_put_list_info_get_sync_and_delete(target, tmp_path):
    if target.sse_c:
        pytest.skip("s3cmd cannot send SSE-C keys; it runs against holder tenants only")
    cfg = _config(target, tmp_path)
    prefix = f"s3://{target.bucket}/e2e/s3cmd/{uuid.uuid4().hex[:12]}/"
    src = write_tree(tmp_path / "src", FILES)
    try:
        _run(cfg, "mb", f"s3://{target.bucket}", check=False)  # exists already: fine
        for name in FILES:
            _run(cfg, "put", str(src / name), prefix + name)

        listing = _run(cfg, "ls", "-r", prefix).stdout.decode()
        listed = {line.split(prefix, 1)[1]: int(line.split()[2])
                  for line in listing.splitlines() if prefix in line}
        assert listed == {n: len(b) for n, b in FILES.items()}, listing

        info = _run(cfg, "info", prefix + "big.bin").stdout.decode()
        assert "aws:kms" in info, info

        for name, body in FILES.items():
            out = tmp_path / "get.bin"
            _run(cfg, "get", "--force", prefix + name, str(out))
            assert hashlib.sha256(out.read_bytes()).hexdigest() == hashlib.sha256(body).hexdigest(), name

        # sync down: every file downloaded and checked against the MD5 s3cmd stored in
        # x-amz-meta-s3cmd-attrs (the ETag is not compared: the answer says aws:kms)
        down = tmp_path / "down"
        down.mkdir()
        _run(cfg, "sync", prefix, str(down) + "/")
        for name, body in FILES.items():
            assert hashlib.sha256((down / name).read_bytes()).hexdigest() == hashlib.sha256(body).hexdigest(), name

        # sync --delete-removed deletes what the source no longer has
        (src / "a+b.txt").unlink()
        _run(cfg, "sync", "--delete-removed", str(src) + "/", prefix)
        listing = _run(cfg, "ls", "-r", prefix).stdout.decode()
        assert "a+b.txt" not in listing and "big.bin" in listing, listing
    finally:
        _run(cfg, "del", "-r", "--force", prefix, check=False)
    assert prefix not in _run(cfg, "ls", "-r", prefix).stdout.decode()
