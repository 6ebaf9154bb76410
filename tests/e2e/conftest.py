"""Fixtures for the end-to-end tests against a running treuhand dev stack.

Inputs (environment):
  TREUHAND_DEV_DIR                  the dir given to `treuhand dev --dir DIR`; the suite reads
                                    DIR/dev.env (SSE-C tenant) and DIR/dev-holder.env (strict holder tenant)
  TREUHAND_E2E_ENV_FILES            optional, overrides the above: colon-separated env files
  AWS_REQUEST_CHECKSUM_CALCULATION  when_supported | when_required: run only that mode
                                    (.ci/e2e.sh runs the suite once per mode); if unset, both
                                    modes are parametrised in one run.

Every test runs for each env file x each client (boto3, aws cli) x each checksum mode.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from s3clients import AwsCliClient, Boto3Client, Target

CHECKSUM_MODES = ("when_supported", "when_required")


def _env_files() -> list[Path]:
    explicit = os.environ.get("TREUHAND_E2E_ENV_FILES")
    if explicit:
        return [Path(p) for p in explicit.split(":") if p]
    dev_dir = os.environ.get("TREUHAND_DEV_DIR")
    if not dev_dir:
        raise pytest.UsageError(
            "set TREUHAND_DEV_DIR to the dir of a running `treuhand dev --dir DIR` "
            "(or TREUHAND_E2E_ENV_FILES=a.env:b.env); see docs/ci.md"
        )
    return [Path(dev_dir) / "dev.env", Path(dev_dir) / "dev-holder.env"]


def _checksum_modes() -> list[str]:
    mode = os.environ.get("AWS_REQUEST_CHECKSUM_CALCULATION")
    if mode:
        if mode not in CHECKSUM_MODES:
            raise pytest.UsageError(f"AWS_REQUEST_CHECKSUM_CALCULATION={mode!r}; expected one of {CHECKSUM_MODES}")
        return [mode]
    return list(CHECKSUM_MODES)


def _load_targets() -> list[Target]:
    targets = []
    for f in _env_files():
        if not f.is_file():
            raise pytest.UsageError(f"env file {f} not found (is `treuhand dev` running?)")
        targets.append(Target.load(f))
    return targets


def pytest_configure(config):
    config.addinivalue_line("markers", "sse_c: only for a tenant whose customer share travels as SSE-C")
    config._treuhand_targets = _load_targets()
    config._treuhand_modes = _checksum_modes()


def pytest_report_header(config):
    lines = [f"checksum modes: {', '.join(config._treuhand_modes)}"]
    for t in config._treuhand_targets:
        lines.append(f"target {t.name}: {t.endpoint} bucket={t.bucket} "
                     f"{'SSE-C share ' + str(t.share_file) if t.sse_c else 'share from holder'}"
                     f" ca={t.ca_bundle or '-'}")
    return lines


def pytest_generate_tests(metafunc):
    config = metafunc.config
    if "target" in metafunc.fixturenames:
        targets = config._treuhand_targets
        if metafunc.definition.get_closest_marker("sse_c"):
            targets = [t for t in targets if t.sse_c]
        metafunc.parametrize("target", targets, ids=[t.name for t in targets], scope="session")
    if "checksum_mode" in metafunc.fixturenames:
        metafunc.parametrize("checksum_mode", config._treuhand_modes, scope="session")


@pytest.fixture(scope="session")
def _buckets_ready():
    return set()


@pytest.fixture(params=["boto3", "awscli"])
def client(request, target, checksum_mode, tmp_path, _buckets_ready):
    """A stock S3 client configured from the target's env file, in the given checksum mode."""
    if target.env.get("TREUHAND_E2E_NO_AWS_CHUNKED") == "1" and checksum_mode == "when_supported" \
            and target.endpoint.startswith("https:"):
        # Only the hand-made rgw adapter env sets this: rgw rejects aws-chunked uploads without
        # Content-Length, which SDKs send over HTTPS in this mode. treuhand must accept them.
        pytest.skip("backend of this adapter env rejects aws-chunked uploads (rgw)")
    if request.param == "boto3":
        c = Boto3Client(target, checksum_mode)
    else:
        c = AwsCliClient(target, checksum_mode, tmp_path)
    if (target.name, target.bucket) not in _buckets_ready:
        c.ensure_bucket()
        _buckets_ready.add((target.name, target.bucket))
    return c


@pytest.fixture(scope="session")
def _cleaners():
    return {}


@pytest.fixture
def keys(request, client, target, _cleaners):
    """Make unique object keys for this test; every object is deleted again afterwards
    (with boto3 whatever the client under test: cleanup is not what is tested, and an aws cli
    process per key costs about a second)."""
    made: list[str] = []
    run_id = uuid.uuid4().hex[:12]
    test = request.node.originalname

    def make(suffix: str = "obj") -> str:
        key = f"e2e/{test}/{run_id}/{suffix}"
        made.append(key)
        return key

    make.prefix = f"e2e/{test}/{run_id}/"
    make.track = made.append  # clean up a key not made by make()
    yield make
    cleaner = _cleaners.get(target.name)
    if cleaner is None:
        cleaner = _cleaners[target.name] = Boto3Client(target, "when_required")
    for k in made:
        try:
            cleaner.delete(k)
        except Exception:  # best effort: the test may have deleted it already
            pass
