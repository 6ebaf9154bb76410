"""Two stock S3 clients behind one small interface: boto3 and the aws cli (v1, as a subprocess).

Each test is written once and runs with both. Every call goes exactly as a user would send it
after `source dev.env`: the endpoint URL, the CA bundle, the credentials and the region from the
env file, and, for an SSE-C tenant, the raw 32-byte customer share as the SSE-C key.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import boto3
import botocore.config
import botocore.exceptions
from boto3.s3.transfer import TransferConfig

MIB = 1024 * 1024
# The aws cli switches to multipart at 8 MiB (its default multipart_threshold); boto3 gets the
# same threshold explicitly.
MULTIPART_THRESHOLD = 8 * MIB
MULTIPART_CHUNKSIZE = 8 * MIB

# Variables an env file may set and that the clients read.
ENV_VARS = (
    "TREUHAND_ENDPOINT",
    "AWS_CA_BUNDLE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "TREUHAND_BUCKET",
    "TREUHAND_SHARE_FILE",
)


class S3Failure(Exception):
    """A request that the server refused. `status` is the HTTP status (None if unknown)."""

    def __init__(self, status: int | None, code: str | None, detail: str):
        super().__init__(f"HTTP {status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


@dataclasses.dataclass(frozen=True)
class Target:
    """One tenant of the dev stack, as described by one env file."""

    name: str  # "dev", "dev-holder", ...
    env_file: Path
    env: dict  # every variable the env file sets (after shell evaluation)

    @property
    def endpoint(self) -> str:
        return self.env["TREUHAND_ENDPOINT"]

    @property
    def bucket(self) -> str:
        return self.env["TREUHAND_BUCKET"]

    @property
    def region(self) -> str:
        return self.env.get("AWS_DEFAULT_REGION") or "us-east-1"

    @property
    def ca_bundle(self) -> str | None:
        return self.env.get("AWS_CA_BUNDLE") or None

    @property
    def share_file(self) -> Path | None:
        p = self.env.get("TREUHAND_SHARE_FILE")
        return Path(p) if p else None

    @property
    def sse_c(self) -> bool:
        """True for a tenant whose customer share travels in the SSE-C headers."""
        return self.share_file is not None

    def share(self) -> bytes:
        assert self.share_file is not None
        data = self.share_file.read_bytes()
        assert len(data) == 32, f"{self.share_file} must hold the raw 32-byte share, has {len(data)} bytes"
        return data

    @classmethod
    def load(cls, env_file: Path) -> "Target":
        env = read_env_file(env_file)
        missing = [v for v in ENV_VARS if v not in env and v not in ("TREUHAND_SHARE_FILE", "AWS_CA_BUNDLE")]
        if missing:
            raise ValueError(f"{env_file} does not set {', '.join(missing)}")
        name = env_file.name[: -len(".env")] if env_file.name.endswith(".env") else env_file.name
        return cls(name=name, env_file=env_file, env=env)


def write_tree(root: Path, files: dict) -> Path:
    """Writes `files` (relative name -> bytes) below `root`; returns `root`."""
    for name, body in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(body)
    return root


def read_env_file(path: Path) -> dict:
    """Evaluate a shell file of `export` lines with bash, in an empty environment, and return the
    variables it sets. Using bash (not a hand-written parser) gives exactly what `source` gives."""
    script = 'set -a; . "$1" >/dev/null; env -0'
    out = subprocess.run(
        ["bash", "-c", script, "read-env", str(path)],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        check=True,
        capture_output=True,
    ).stdout
    env = {}
    for item in out.split(b"\0"):
        if b"=" in item:
            k, v = item.split(b"=", 1)
            env[k.decode()] = v.decode()
    for noise in ("PATH", "PWD", "SHLVL", "_", "OLDPWD"):
        env.pop(noise, None)
    return env


def clean_base_env() -> dict:
    """The process environment without any AWS_* variable (a machine-wide AWS_CA_BUNDLE or a
    profile would otherwise leak into the clients) and without user config files."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_CONFIG_FILE"] = "/nonexistent/treuhand-e2e/config"
    env["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent/treuhand-e2e/credentials"
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    return env


# ----------------------------------------------------------------------------------------------
# boto3


class Boto3Client:
    kind = "boto3"

    def __init__(self, target: Target, checksum_mode: str):
        self.target = target
        self.checksum_mode = checksum_mode
        session = boto3.session.Session(
            aws_access_key_id=target.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=target.env["AWS_SECRET_ACCESS_KEY"],
            region_name=target.region,
        )
        self.s3 = session.client(
            "s3",
            endpoint_url=target.endpoint,
            # Like AWS_CA_BUNDLE for the cli; True = system trust store if the file sets none.
            verify=target.ca_bundle or True,
            config=botocore.config.Config(
                request_checksum_calculation=checksum_mode,
                response_checksum_validation=checksum_mode,
                retries={"mode": "standard", "max_attempts": 2},
                connect_timeout=10,
                read_timeout=120,
            ),
        )
        self.calls: list[str] = []  # operation names sent, for assertions such as "was multipart"
        self.s3.meta.events.register("before-call.s3", self._record)

    def _record(self, model, **_):
        self.calls.append(model.name)

    def sse(self, key: bytes | None = None) -> dict:
        if key is None:
            if not self.target.sse_c:
                return {}
            key = self.target.share()
        return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}

    @staticmethod
    def _fail(e: botocore.exceptions.ClientError) -> S3Failure:
        meta = e.response.get("ResponseMetadata", {})
        err = e.response.get("Error", {})
        return S3Failure(meta.get("HTTPStatusCode"), err.get("Code"), str(e))

    def ensure_bucket(self) -> None:
        try:
            self.s3.head_bucket(Bucket=self.target.bucket)
        except botocore.exceptions.ClientError as e:
            if e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 404:
                raise
            self.s3.create_bucket(Bucket=self.target.bucket)

    def put(self, key: str, data: bytes) -> str:
        r = self.s3.put_object(Bucket=self.target.bucket, Key=key, Body=data, **self.sse())
        return r["ETag"]

    def put_with_metadata(self, key: str, data: bytes, content_type: str, metadata: dict) -> str:
        r = self.s3.put_object(Bucket=self.target.bucket, Key=key, Body=data, ContentType=content_type,
                               Metadata=metadata, **self.sse())
        return r["ETag"]

    def put_file(self, key: str, path: Path) -> None:
        cfg = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_CHUNKSIZE)
        self.s3.upload_file(str(path), self.target.bucket, key, ExtraArgs=self.sse(), Config=cfg)

    def download(self, key: str, path: Path) -> None:
        cfg = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_CHUNKSIZE)
        self.s3.download_file(self.target.bucket, key, str(path), ExtraArgs=self.sse(), Config=cfg)

    def get(self, key: str, range_header: str | None = None, sse_key: bytes | None = None,
            no_sse: bool = False) -> bytes:
        kwargs = {} if no_sse else self.sse(sse_key)
        if range_header:
            kwargs["Range"] = range_header
        try:
            r = self.s3.get_object(Bucket=self.target.bucket, Key=key, **kwargs)
        except botocore.exceptions.ClientError as e:
            raise self._fail(e) from e
        return r["Body"].read()

    def head(self, key: str, sse_key: bytes | None = None, no_sse: bool = False) -> dict:
        kwargs = {} if no_sse else self.sse(sse_key)
        try:
            r = self.s3.head_object(Bucket=self.target.bucket, Key=key, **kwargs)
        except botocore.exceptions.ClientError as e:
            raise self._fail(e) from e
        return {"size": r["ContentLength"], "etag": r.get("ETag"), "content_type": r.get("ContentType"),
                "metadata": r.get("Metadata", {})}

    def list(self, prefix: str, delimiter: str | None = None, page_size: int | None = None,
             api: str = "v2"):
        """ListObjectsV2 (or ListObjects with api="v1") over all pages:
        ({key: (size, etag)}, [common prefixes], pages)."""
        kwargs = {"Bucket": self.target.bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        pag = self.s3.get_paginator("list_objects_v2" if api == "v2" else "list_objects")
        objects, prefixes, pages = {}, [], 0
        for page in pag.paginate(**kwargs, PaginationConfig={"PageSize": page_size} if page_size else {}):
            pages += 1
            for o in page.get("Contents", []):
                objects[o["Key"]] = (o["Size"], o.get("ETag"))
            prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        return objects, prefixes, pages

    def delete(self, key: str) -> None:
        self.s3.delete_object(Bucket=self.target.bucket, Key=key)


# ----------------------------------------------------------------------------------------------
# aws cli


def aws_executable() -> str:
    """The aws cli of this venv (installed by .ci/pyenv.sh), else the one on PATH."""
    here = Path(sys.executable).parent / "aws"
    if here.exists():
        return str(here)
    found = shutil.which("aws")
    if not found:
        raise RuntimeError("aws cli not found; run .ci/pyenv.sh")
    return found


# urllib3's debug line for every response: ... "GET /bucket/key HTTP/1.1" 403 242
_STATUS_RE = re.compile(r'"(?:GET|PUT|POST|HEAD|DELETE) \S+ HTTP/1\.1" (\d{3})')
_CODE_RE = re.compile(r"An error occurred \(([^)]*)\)")


class AwsCliClient:
    kind = "awscli"

    def __init__(self, target: Target, checksum_mode: str, workdir: Path):
        self.target = target
        self.checksum_mode = checksum_mode
        self.workdir = workdir
        self.aws = aws_executable()
        # What `source dev.env` gives a user, plus the checksum mode.
        self.env = clean_base_env()
        self.env.update(target.env)
        self.env["AWS_REQUEST_CHECKSUM_CALCULATION"] = checksum_mode
        self.env["AWS_RESPONSE_CHECKSUM_VALIDATION"] = checksum_mode
        self.env["AWS_MAX_ATTEMPTS"] = "2"

    # --- plumbing

    def run(self, *args: str, check: bool = True, debug: bool = False) -> subprocess.CompletedProcess:
        cmd = [self.aws, "--endpoint-url", self.target.endpoint, "--output", "json"]
        if debug:
            cmd.append("--debug")
        cmd += list(args)
        p = subprocess.run(cmd, env=self.env, capture_output=True, timeout=300)
        if check and p.returncode != 0:
            raise self.failure(p)
        return p

    def failure(self, p: subprocess.CompletedProcess) -> S3Failure:
        err = p.stderr.decode(errors="replace")
        statuses = [int(s) for s in _STATUS_RE.findall(err)]
        code = _CODE_RE.search(err)
        tail = "\n".join(err.strip().splitlines()[-5:])
        # The first error status is the operation's own answer: after a 400 on HEAD, botocore's
        # region redirector sends a HeadBucket of its own, whose 200 comes later in the log.
        errors = [s for s in statuses if s >= 300]
        status = errors[0] if errors else (statuses[-1] if statuses else None)
        return S3Failure(status, code.group(1) if code else None,
                         f"`aws` exited {p.returncode}: {tail}")

    def _keyfile(self, key: bytes) -> Path:
        f = tempfile.NamedTemporaryFile(dir=self.workdir, prefix="ssec-", suffix=".key", delete=False)
        f.write(key)
        f.close()
        return Path(f.name)

    def s3api_sse(self, key: bytes | None = None) -> list[str]:
        """s3api flags for SSE-C (boto parameter names)."""
        if key is not None:
            path = self._keyfile(key)
        elif self.target.sse_c:
            path = self.target.share_file
        else:
            return []
        return ["--sse-customer-algorithm", "AES256", "--sse-customer-key", f"fileb://{path}"]

    def s3_sse(self) -> list[str]:
        """`aws s3 cp` flags for SSE-C, as in the quick start."""
        if not self.target.sse_c:
            return []
        return ["--sse-c", "AES256", "--sse-c-key", f"fileb://{self.target.share_file}"]

    def _tmp(self, suffix: str) -> Path:
        fd, name = tempfile.mkstemp(dir=self.workdir, suffix=suffix)
        os.close(fd)
        return Path(name)

    # --- operations

    def ensure_bucket(self) -> None:
        p = self.run("s3api", "head-bucket", "--bucket", self.target.bucket, check=False)
        if p.returncode != 0:
            self.run("s3api", "create-bucket", "--bucket", self.target.bucket)

    def put(self, key: str, data: bytes) -> str:
        body = self._tmp(".put")
        body.write_bytes(data)
        p = self.run("s3api", "put-object", "--bucket", self.target.bucket, "--key", key,
                     "--body", str(body), *self.s3api_sse())
        return json.loads(p.stdout)["ETag"]

    def put_with_metadata(self, key: str, data: bytes, content_type: str, metadata: dict) -> str:
        body = self._tmp(".put")
        body.write_bytes(data)
        p = self.run("s3api", "put-object", "--bucket", self.target.bucket, "--key", key,
                     "--body", str(body), "--content-type", content_type,
                     "--metadata", json.dumps(metadata), *self.s3api_sse())
        return json.loads(p.stdout)["ETag"]

    def put_file(self, key: str, path: Path) -> subprocess.CompletedProcess:
        # --debug lets the test see that the upload really went multipart.
        return self.run("s3", "cp", "--only-show-errors", str(path), f"s3://{self.target.bucket}/{key}",
                        *self.s3_sse(), debug=True)

    def download(self, key: str, path: Path) -> None:
        self.run("s3", "cp", "--only-show-errors", f"s3://{self.target.bucket}/{key}", str(path), *self.s3_sse())

    def get(self, key: str, range_header: str | None = None, sse_key: bytes | None = None,
            no_sse: bool = False) -> bytes:
        out = self._tmp(".get")
        out.unlink()
        args = ["s3api", "get-object", "--bucket", self.target.bucket, "--key", key]
        if range_header:
            args += ["--range", range_header]
        if not no_sse:
            args += self.s3api_sse(sse_key)
        args.append(str(out))
        p = self.run(*args, check=False, debug=True)
        if p.returncode != 0:
            # whatever happened, the plaintext must not have been written
            self.last_failed_output = out.read_bytes() if out.exists() else b""
            raise self.failure(p)
        return out.read_bytes()

    def head(self, key: str, sse_key: bytes | None = None, no_sse: bool = False) -> dict:
        args = ["s3api", "head-object", "--bucket", self.target.bucket, "--key", key]
        if not no_sse:
            args += self.s3api_sse(sse_key)
        p = self.run(*args, check=False, debug=True)
        if p.returncode != 0:
            raise self.failure(p)
        r = json.loads(p.stdout)
        return {"size": r["ContentLength"], "etag": r.get("ETag"), "content_type": r.get("ContentType"),
                "metadata": r.get("Metadata", {})}

    def list(self, prefix: str, delimiter: str | None = None, page_size: int | None = None,
             api: str = "v2"):
        op = "list-objects-v2" if api == "v2" else "list-objects"
        args = ["s3api", op, "--bucket", self.target.bucket, "--prefix", prefix]
        if delimiter:
            args += ["--delimiter", delimiter]
        if page_size:
            args += ["--page-size", str(page_size)]
        p = self.run(*args, debug=bool(page_size))
        # every listing GET goes to the bucket with a prefix= query (v2 adds list-type=2)
        pages = len(re.findall(r'"GET /[^/"?]*\?[^"]*prefix=[^"]*HTTP/1\.1" 200', p.stderr.decode(errors="replace")))
        r = json.loads(p.stdout) if p.stdout.strip() else {}
        objects = {o["Key"]: (o["Size"], o.get("ETag")) for o in r.get("Contents", [])}
        prefixes = [c["Prefix"] for c in r.get("CommonPrefixes", [])]
        return objects, prefixes, pages

    def delete(self, key: str) -> None:
        self.run("s3api", "delete-object", "--bucket", self.target.bucket, "--key", key)
