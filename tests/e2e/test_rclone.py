"""rclone (a Go S3 client, HTTP/2, ListObjects v1 and encoding-type=url) against treuhand dev.

rclone is what many operators use for bulk copies and syncs. It found two bugs the Python
clients could not: an S3 error document sent as a DATA frame on a HEAD over HTTP/2 (a protocol
error for Go), and raw key names in listings that asked for encoding-type=url.

The test needs the `rclone` binary (Debian package `rclone`; `.ci/run` installs it). Without it
the test is skipped, unless TREUHAND_E2E_REQUIRE_RCLONE=1 (set by .ci/run), where it fails.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from s3clients import clean_base_env, write_tree

MIB = 1024 * 1024
# Names that need encoding in a URL or in a listing; one of them is not ASCII.
FILES = {
    "a+b.txt": b"plus\n",
    "a b.txt": b"space\n",
    "100%.txt": b"percent\n",
    "sub/\u00fc.bin": os.urandom(70_000),
    "sub/deeper/big.bin": os.urandom(12 * MIB),  # above the 5 MiB cutoff below: multipart
}


@pytest.fixture
def rclone():
    exe = shutil.which("rclone")
    if exe is None:
        if os.environ.get("TREUHAND_E2E_REQUIRE_RCLONE") == "1":
            pytest.fail("rclone is not installed (apt-get install rclone)")
        pytest.skip("rclone is not installed (apt-get install rclone)")
    return exe


def _run(exe: str, env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([exe, *args], env=env, capture_output=True, timeout=300)
    err = p.stderr.decode(errors="replace")
    if check and p.returncode != 0:
        raise AssertionError(f"rclone {' '.join(args)} exited {p.returncode}:\n{err[-3000:]}")
    # Go's HTTP/2 client logs protocol violations and carries on; they are failures here.
    assert "protocol error" not in err, f"rclone {' '.join(args)}:\n{err[-3000:]}"
    # A checksum mismatch is logged even when a retry then succeeds.
    for mismatch in ("corrupted on transfer", "hash differ", "md5 differ"):
        assert mismatch not in err, f"rclone {' '.join(args)}:\n{err[-3000:]}"
    return p


def _env(target) -> dict:
    """An rclone remote `th:` configured from the target's env file, nothing from user config."""
    env = clean_base_env()
    env["RCLONE_CONFIG"] = "/nonexistent/treuhand-e2e/rclone.conf"
    env.update({
        "RCLONE_CONFIG_TH_TYPE": "s3",
        "RCLONE_CONFIG_TH_PROVIDER": "Other",
        "RCLONE_CONFIG_TH_ENDPOINT": target.endpoint,
        "RCLONE_CONFIG_TH_REGION": target.region,
        "RCLONE_CONFIG_TH_ACCESS_KEY_ID": target.env["AWS_ACCESS_KEY_ID"],
        "RCLONE_CONFIG_TH_SECRET_ACCESS_KEY": target.env["AWS_SECRET_ACCESS_KEY"],
        "RCLONE_CONFIG_TH_FORCE_PATH_STYLE": "true",
        "RCLONE_CONFIG_TH_UPLOAD_CUTOFF": "5M",
        "RCLONE_CONFIG_TH_CHUNK_SIZE": "5M",
    })
    if target.ca_bundle:
        env["RCLONE_CA_CERT"] = target.ca_bundle
    if target.sse_c:
        env["RCLONE_CONFIG_TH_SSE_CUSTOMER_ALGORITHM"] = "AES256"
        env["RCLONE_CONFIG_TH_SSE_CUSTOMER_KEY_BASE64"] = base64.b64encode(target.share()).decode()
    else:
        # Without SSE-C, rclone takes an ETag that looks like an MD5 for the plaintext MD5 and
        # calls the upload corrupted. treuhand's ETag is deliberately not the plaintext MD5
        # (docs/proxy.md, "ETag"). Told the server encrypts with a managed key (what the proxy
        # answers for holder tenants), rclone treats ETags as opaque, as for SSE-C: it keeps the
        # MD5 it computed in X-Amz-Meta-Md5chksum (sealed in the header) and checks against that.
        env["RCLONE_CONFIG_TH_SERVER_SIDE_ENCRYPTION"] = "aws:kms"
    return env


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _assert_nothing_transferred(log: str, files: int) -> None:
    """Checks rclone's -v log: every file was checked, none was copied."""
    copied = [line for line in log.splitlines() if "Copied (" in line or "Updated modification time" in line]
    assert not copied, "unchanged files were transferred again:\n" + "\n".join(copied)
    # File-count stats lines ("Transferred: 3 / 3, 100%"), not the byte one ("0 B / 0 B").
    counts = re.findall(r"Transferred:\s+(\d+) / (\d+),", log)
    assert all(done == "0" and total == "0" for done, total in counts), f"transfers in:\n{log[-2000:]}"
    checks = re.findall(r"Checks:\s+(\d+) / (\d+)", log)
    assert checks and checks[-1] == (str(files), str(files)), f"expected {files} checks in:\n{log[-2000:]}"


def test_rclone_copy_list_check_sync_and_purge(rclone, target, tmp_path):
    env = _env(target)
    remote = f"th:{target.bucket}/e2e/rclone/{uuid.uuid4().hex[:12]}"
    src = write_tree(tmp_path / "src", FILES)
    try:
        # copy HEADs every destination key first: on HTTP/2 each 404 must come without a body
        _run(rclone, env, "mkdir", f"th:{target.bucket}")
        _run(rclone, env, "copy", str(src), remote)

        listed = _run(rclone, env, "lsf", "-R", "--files-only", remote).stdout.decode().split("\n")
        assert sorted(x for x in listed if x) == sorted(FILES), "rclone must list every name exactly"

        # --download compares the bytes; without it, the MD5s (rclone's own, from
        # X-Amz-Meta-Md5chksum, never the ETag)
        for how in (["--download"], []):
            check = _run(rclone, env, "check", *how, str(src), remote, check=False)
            assert check.returncode == 0, check.stderr.decode(errors="replace")[-2000:]
            assert "0 differences found" in check.stderr.decode(errors="replace")
        sums = _run(rclone, env, "md5sum", remote).stdout.decode().split("\n")
        assert sorted(x for x in sums if x) == sorted(
            f"{hashlib.md5(body).hexdigest()}  {name}" for name, body in FILES.items()
        ), "rclone must see the plaintext MD5 it stored, for single and multipart uploads"

        # download: rclone checks each file against the MD5 it knows, and must find no mismatch
        dst = tmp_path / "dst"
        _run(rclone, env, "copy", remote, str(dst))
        for name, body in FILES.items():
            assert _sha((dst / name).read_bytes()) == _sha(body), name

        assert _run(rclone, env, "cat", f"{remote}/a+b.txt").stdout == FILES["a+b.txt"]
        big = _run(rclone, env, "cat", f"{remote}/sub/deeper/big.bin").stdout
        assert _sha(big) == _sha(FILES["sub/deeper/big.bin"])

        # sync deletes what the source no longer has
        (src / "a b.txt").unlink()
        _run(rclone, env, "sync", str(src), remote)
        listed = _run(rclone, env, "lsf", "-R", "--files-only", remote).stdout.decode().split("\n")
        assert sorted(x for x in listed if x) == sorted(n for n in FILES if n != "a b.txt")

        # A second sync of unchanged files transfers nothing: rclone compares size and the
        # mtime it keeps in X-Amz-Meta-Mtime, which the proxy now stores (format v2).
        again = _run(rclone, env, "sync", "-v", "--stats-one-line=false", str(src), remote)
        _assert_nothing_transferred(again.stderr.decode(errors="replace"), len(FILES) - 1)
    finally:
        _run(rclone, env, "purge", remote, check=False)
    left = _run(rclone, env, "lsf", "-R", remote, check=False).stdout.decode().strip()
    assert left == "", f"purge left {left!r}"
