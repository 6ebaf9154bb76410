"""Buckets and listings as stock clients see them (issue 14, item 3).

Bucket calls SDKs make on their own (GetBucketVersioning, GetBucketLocation, Get/PutBucketAcl,
GetBucketPolicy) run with boto3 and the aws cli; the listing details (max-keys=0, empty
delimiter, fetch-owner, start-after, encoding-type=url, v1 markers, awkward keys) and the
answers on a missing bucket run with boto3, each in a bucket of its own so that the whole
listing is known.
"""

from __future__ import annotations

import json
import uuid

import botocore.exceptions
import pytest

from s3clients import AwsCliClient, Boto3Client, S3Failure

# ----------------------------------------------------------------------------------------------
# helpers


def call(client, op: str, **params) -> dict:
    """One S3 operation with either client: boto3 method `op`, or `aws s3api <op-with-dashes>`
    with each parameter as its flag (dicts as JSON). Refusals raise S3Failure."""
    if isinstance(client, Boto3Client):
        try:
            return getattr(client.s3, op)(**params)
        except botocore.exceptions.ClientError as e:
            raise client._fail(e) from e
    args = ["s3api", op.replace("_", "-")]
    for name, value in params.items():
        flag = "--" + "".join("-" + c.lower() if c.isupper() else c for c in name).lstrip("-")
        flag = flag.replace("--a-c-l", "--acl")
        args += [flag, json.dumps(value) if isinstance(value, dict) else str(value)]
    p = client.run(*args, check=False, debug=True)
    if p.returncode != 0:
        raise client.failure(p)
    return json.loads(p.stdout) if p.stdout.strip() else {}


def refused(client, op: str, **params) -> S3Failure:
    with pytest.raises(S3Failure) as excinfo:
        call(client, op, **params)
    return excinfo.value


@pytest.fixture
def boto(target):
    """A boto3 client of the target (the checksum mode does not matter to listings)."""
    return Boto3Client(target, "when_required")


@pytest.fixture
def bucket(boto):
    """A new empty bucket of this test's own; emptied and deleted afterwards."""
    name = f"e2e-bkt-{uuid.uuid4().hex[:16]}"
    boto.s3.create_bucket(Bucket=name)
    yield name
    s3 = boto.s3
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        for o in page.get("Contents", []):
            s3.delete_object(Bucket=name, Key=o["Key"])
    s3.delete_bucket(Bucket=name)


def put_keys(boto, bucket: str, keys) -> None:
    for k in keys:
        boto.s3.put_object(Bucket=bucket, Key=k, Body=b"x", **boto.sse())


def listed(response) -> tuple[list[str], list[str]]:
    return ([o["Key"] for o in response.get("Contents", [])],
            [p["Prefix"] for p in response.get("CommonPrefixes", [])])


def list_v(boto, api: str, **params):
    return getattr(boto.s3, "list_objects_v2" if api == "v2" else "list_objects")(**params)


def tenant_id(boto) -> str:
    return boto.s3.list_buckets()["Owner"]["ID"]


# ----------------------------------------------------------------------------------------------
# bucket calls SDKs make (boto3 and aws cli)


def test_get_bucket_versioning_answers_never_enabled(client):
    r = call(client, "get_bucket_versioning", Bucket=client.target.bucket)
    assert "Status" not in r and "MFADelete" not in r, r


def test_get_bucket_location_answers_us_east_1_as_an_empty_constraint(client):
    r = call(client, "get_bucket_location", Bucket=client.target.bucket)
    assert r.get("LocationConstraint") is None, r


def test_get_bucket_acl_grants_only_the_owner_full_control(client, target):
    r = call(client, "get_bucket_acl", Bucket=target.bucket)
    owner = Boto3Client(target, "when_required").s3.list_buckets()["Owner"]
    assert r["Owner"]["ID"] == owner["ID"]
    assert r["Owner"]["DisplayName"] == owner["DisplayName"]
    assert len(r["Grants"]) == 1, r
    grant = r["Grants"][0]
    assert grant["Permission"] == "FULL_CONTROL"
    assert grant["Grantee"]["Type"] == "CanonicalUser"
    assert grant["Grantee"]["ID"] == owner["ID"]


def test_put_bucket_acl_private_is_accepted(client, target):
    call(client, "put_bucket_acl", Bucket=target.bucket, ACL="private")


def test_put_bucket_acl_with_the_acl_get_answered_is_accepted(client, target):
    acl = call(client, "get_bucket_acl", Bucket=target.bucket)
    policy = {"Owner": acl["Owner"], "Grants": acl["Grants"]}
    call(client, "put_bucket_acl", Bucket=target.bucket, AccessControlPolicy=policy)


@pytest.mark.parametrize("acl", ["public-read", "public-read-write", "authenticated-read"])
def test_put_bucket_acl_other_canned_acls_are_not_implemented(client, target, acl):
    e = refused(client, "put_bucket_acl", Bucket=target.bucket, ACL=acl)
    assert (e.status, e.code) == (501, "NotImplemented"), e
    assert call(client, "get_bucket_acl", Bucket=target.bucket)["Grants"][0]["Permission"] == "FULL_CONTROL"


def test_put_bucket_acl_granting_anyone_else_is_not_implemented(client, target):
    acl = call(client, "get_bucket_acl", Bucket=target.bucket)
    everyone = {"Grantee": {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"},
                "Permission": "READ"}
    policy = {"Owner": acl["Owner"], "Grants": acl["Grants"] + [everyone]}
    e = refused(client, "put_bucket_acl", Bucket=target.bucket, AccessControlPolicy=policy)
    assert (e.status, e.code) == (501, "NotImplemented"), e


def test_get_bucket_policy_answers_no_such_bucket_policy(client, target):
    e = refused(client, "get_bucket_policy", Bucket=target.bucket)
    assert (e.status, e.code) == (404, "NoSuchBucketPolicy"), e


# ----------------------------------------------------------------------------------------------
# a bucket that does not exist (boto3: one case per operation)

UPLOAD_ID = "0" * 32  # well-formed, never issued


def _missing_bucket_ops(boto, bucket, own_bucket):
    sse = boto.sse() if boto else {}
    return {
        "list_objects": lambda: boto.s3.list_objects(Bucket=bucket),
        "list_objects_v2": lambda: boto.s3.list_objects_v2(Bucket=bucket),
        "get_bucket_location": lambda: boto.s3.get_bucket_location(Bucket=bucket),
        "get_bucket_versioning": lambda: boto.s3.get_bucket_versioning(Bucket=bucket),
        "get_bucket_acl": lambda: boto.s3.get_bucket_acl(Bucket=bucket),
        "put_bucket_acl": lambda: boto.s3.put_bucket_acl(Bucket=bucket, ACL="private"),
        "get_bucket_policy": lambda: boto.s3.get_bucket_policy(Bucket=bucket),
        "delete_bucket": lambda: boto.s3.delete_bucket(Bucket=bucket),
        "get_object": lambda: boto.s3.get_object(Bucket=bucket, Key="k", **sse),
        "put_object": lambda: boto.s3.put_object(Bucket=bucket, Key="k", Body=b"x", **sse),
        "delete_object": lambda: boto.s3.delete_object(Bucket=bucket, Key="k"),
        "delete_objects": lambda: boto.s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "k"}]}),
        "copy_object_into": lambda: boto.s3.copy_object(
            Bucket=bucket, Key="k", CopySource={"Bucket": own_bucket, "Key": "src"}, **sse,
            **{"CopySource" + k: v for k, v in sse.items()}),
        "copy_object_from": lambda: boto.s3.copy_object(
            Bucket=own_bucket, Key="k", CopySource={"Bucket": bucket, "Key": "k"}, **sse,
            **{"CopySource" + k: v for k, v in sse.items()}),
        "create_multipart_upload": lambda: boto.s3.create_multipart_upload(Bucket=bucket, Key="k", **sse),
        "upload_part": lambda: boto.s3.upload_part(Bucket=bucket, Key="k", UploadId=UPLOAD_ID,
                                                   PartNumber=1, Body=b"x", **sse),
        "list_parts": lambda: boto.s3.list_parts(Bucket=bucket, Key="k", UploadId=UPLOAD_ID),
        "abort_multipart_upload": lambda: boto.s3.abort_multipart_upload(Bucket=bucket, Key="k",
                                                                         UploadId=UPLOAD_ID),
        "complete_multipart_upload": lambda: boto.s3.complete_multipart_upload(
            Bucket=bucket, Key="k", UploadId=UPLOAD_ID,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"x"'}]}, **sse),
        "list_multipart_uploads": lambda: boto.s3.list_multipart_uploads(Bucket=bucket),
    }


MISSING_BUCKET_OPS = list(_missing_bucket_ops(None, "", "").keys())


def _status_and_code(fn):
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        fn()
    r = excinfo.value.response
    return r["ResponseMetadata"]["HTTPStatusCode"], r["Error"].get("Code")


@pytest.mark.parametrize("op", MISSING_BUCKET_OPS)
def test_an_operation_on_a_missing_bucket_answers_no_such_bucket(boto, target, op):
    boto.s3.put_object(Bucket=target.bucket, Key="src", Body=b"x", **boto.sse())
    ops = _missing_bucket_ops(boto, f"e2e-missing-{uuid.uuid4().hex[:16]}", target.bucket)
    assert _status_and_code(ops[op]) == (404, "NoSuchBucket")


@pytest.mark.parametrize("op", ["head_bucket", "head_object"])
def test_a_head_on_a_missing_bucket_answers_404(boto, op):
    bucket = f"e2e-missing-{uuid.uuid4().hex[:16]}"
    fn = boto.s3.head_bucket if op == "head_bucket" else (
        lambda Bucket: boto.s3.head_object(Bucket=Bucket, Key="k", **boto.sse()))
    assert _status_and_code(lambda: fn(Bucket=bucket))[0] == 404


def test_a_bucket_only_another_tenant_has_is_no_such_bucket(boto, target):
    """Tenants have separate bucket namespaces: the other dev tenant's bucket is not ours."""
    other = "demo-holder" if target.bucket != "demo-holder" else "demo"
    for fn in (lambda: boto.s3.list_objects_v2(Bucket=other),
               lambda: boto.s3.get_bucket_acl(Bucket=other),
               lambda: boto.s3.get_object(Bucket=other, Key="k", **boto.sse())):
        assert _status_and_code(fn) == (404, "NoSuchBucket")


def test_an_invalid_bucket_name_is_invalid_bucket_name(boto):
    for fn in (lambda: boto.s3.list_objects_v2(Bucket="Bad_Name"),
               lambda: boto.s3.get_bucket_versioning(Bucket="Bad_Name"),
               lambda: boto.s3.put_object(Bucket="Bad_Name", Key="k", Body=b"x", **boto.sse())):
        assert _status_and_code(fn) == (400, "InvalidBucketName")


def test_a_bucket_name_with_a_dot_next_to_a_dash_is_invalid_bucket_name(boto):
    for name in ("foo.-bar", "foo-.bar"):
        assert _status_and_code(lambda: boto.s3.create_bucket(Bucket=name)) == (400, "InvalidBucketName")


def test_recreating_ones_own_bucket_answers_200_and_keeps_its_objects(boto, bucket):
    # us-east-1 (the region the proxy answers) says 200 to the owner's re-create.
    put_keys(boto, bucket, ["kept"])
    boto.s3.create_bucket(Bucket=bucket)
    assert listed(boto.s3.list_objects_v2(Bucket=bucket))[0] == ["kept"]


def test_list_buckets_pages_with_max_buckets_and_a_continuation_token(boto):
    run = uuid.uuid4().hex[:10]
    names = [f"e2e-lb-{run}-{i}" for i in range(3)]
    for n in names:
        boto.s3.create_bucket(Bucket=n)
    try:
        prefix = f"e2e-lb-{run}-"
        first = boto.s3.list_buckets(MaxBuckets=2, Prefix=prefix)
        assert [b["Name"] for b in first["Buckets"]] == names[:2]
        assert first["ContinuationToken"] and first["Prefix"] == prefix
        rest = boto.s3.list_buckets(MaxBuckets=2, Prefix=prefix,
                                    ContinuationToken=first["ContinuationToken"])
        assert [b["Name"] for b in rest["Buckets"]] == names[2:]
        assert "ContinuationToken" not in rest
        seen = [b["Name"] for page in boto.s3.get_paginator("list_buckets").paginate(
            Prefix=prefix, PaginationConfig={"PageSize": 1}) for b in page["Buckets"]]
        assert seen == names
    finally:
        for n in names:
            boto.s3.delete_bucket(Bucket=n)


# ----------------------------------------------------------------------------------------------
# listings (boto3)

FOUR = ["bar", "baz", "foo", "quxx"]


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_list_max_keys_zero_is_empty_and_not_truncated(boto, bucket, api):
    put_keys(boto, bucket, FOUR)
    r = list_v(boto, api, Bucket=bucket, MaxKeys=0)
    assert listed(r) == ([], [])
    assert r["IsTruncated"] is False
    assert r["MaxKeys"] == 0
    assert "NextMarker" not in r and "NextContinuationToken" not in r
    if api == "v2":
        assert r["KeyCount"] == 0


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_list_empty_delimiter_lists_flat_and_is_not_echoed(boto, bucket, api):
    put_keys(boto, bucket, ["a/1", "a/2", "b"])
    r = list_v(boto, api, Bucket=bucket, Delimiter="")
    assert "Delimiter" not in r
    assert listed(r) == (["a/1", "a/2", "b"], [])


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_list_prefix_is_always_echoed_and_delimiter_only_when_given(boto, bucket, api):
    put_keys(boto, bucket, FOUR)
    r = list_v(boto, api, Bucket=bucket)
    assert r["Prefix"] == ""
    assert "Delimiter" not in r
    assert r["MaxKeys"] == 1000
    r = list_v(boto, api, Bucket=bucket, Prefix="ba", Delimiter="a")
    assert (r["Prefix"], r["Delimiter"]) == ("ba", "a")
    assert listed(r) == (["bar", "baz"], [])


def test_list_v1_marker_is_always_echoed(boto, bucket):
    put_keys(boto, bucket, FOUR)
    assert boto.s3.list_objects(Bucket=bucket)["Marker"] == ""
    r = boto.s3.list_objects(Bucket=bucket, Marker="blah")
    assert r["Marker"] == "blah"
    assert listed(r) == (["foo", "quxx"], [])


def test_list_v1_always_names_the_owner(boto, bucket):
    put_keys(boto, bucket, FOUR)
    owner = tenant_id(boto)
    for o in boto.s3.list_objects(Bucket=bucket)["Contents"]:
        assert o["Owner"] == {"ID": owner, "DisplayName": owner}


def test_list_v2_names_the_owner_only_with_fetch_owner(boto, bucket):
    put_keys(boto, bucket, FOUR)
    owner = tenant_id(boto)
    for fetch in (None, False):
        kwargs = {} if fetch is None else {"FetchOwner": fetch}
        for o in boto.s3.list_objects_v2(Bucket=bucket, **kwargs)["Contents"]:
            assert "Owner" not in o
    for o in boto.s3.list_objects_v2(Bucket=bucket, FetchOwner=True)["Contents"]:
        assert o["Owner"] == {"ID": owner, "DisplayName": owner}


def test_list_v2_start_after_skips_keys_up_to_it_and_is_echoed(boto, bucket):
    put_keys(boto, bucket, FOUR)
    r = boto.s3.list_objects_v2(Bucket=bucket, StartAfter="bar")
    assert r["StartAfter"] == "bar"
    assert listed(r) == (["baz", "foo", "quxx"], [])
    r = boto.s3.list_objects_v2(Bucket=bucket, StartAfter="blah")
    assert listed(r) == (["foo", "quxx"], [])
    r = boto.s3.list_objects_v2(Bucket=bucket, StartAfter="zzz")
    assert listed(r) == ([], []) and r["IsTruncated"] is False


def test_list_v2_continuation_token_wins_over_start_after(boto, bucket):
    put_keys(boto, bucket, FOUR)
    first = boto.s3.list_objects_v2(Bucket=bucket, StartAfter="bar", MaxKeys=1)
    assert listed(first) == (["baz"], []) and first["IsTruncated"] is True
    token = first["NextContinuationToken"]
    r = boto.s3.list_objects_v2(Bucket=bucket, StartAfter="bar", ContinuationToken=token)
    assert (r["ContinuationToken"], r["StartAfter"]) == (token, "bar")
    assert listed(r) == (["foo", "quxx"], []) and r["IsTruncated"] is False
    assert "NextContinuationToken" not in r


def test_list_v2_an_empty_continuation_token_lists_from_the_start(boto, bucket):
    put_keys(boto, bucket, FOUR)
    r = boto.s3.list_objects_v2(Bucket=bucket, ContinuationToken="")
    assert r["ContinuationToken"] == ""
    assert listed(r) == (FOUR, [])


def test_list_v1_next_marker_comes_only_with_a_delimiter(boto, bucket):
    put_keys(boto, bucket, ["asdf", "boo/bar", "boo/baz/xyzzy", "cquux/thud", "cquux/bla"])
    # Without a delimiter: truncated, no NextMarker; the client resumes after its last key.
    r = boto.s3.list_objects(Bucket=bucket, MaxKeys=2)
    assert r["IsTruncated"] is True and "NextMarker" not in r
    assert listed(r) == (["asdf", "boo/bar"], [])
    r = boto.s3.list_objects(Bucket=bucket, MaxKeys=2, Marker="boo/bar")
    assert listed(r) == (["boo/baz/xyzzy", "cquux/bla"], [])
    # With one: NextMarker is the last key or common prefix of the page (as in s3-tests).
    pages, marker = [], ""
    while True:
        r = boto.s3.list_objects(Bucket=bucket, Delimiter="/", MaxKeys=1, Marker=marker)
        pages.append((listed(r), r.get("NextMarker")))
        if not r["IsTruncated"]:
            break
        marker = r["NextMarker"]
    assert pages == [((["asdf"], []), "asdf"), (([], ["boo/"]), "boo/"), (([], ["cquux/"]), None)]


def test_list_v1_paginator_visits_every_key_once_with_and_without_a_delimiter(boto, bucket):
    keys = [f"d{i % 3}/k{i:02}" for i in range(12)] + [f"top{i}" for i in range(5)]
    put_keys(boto, bucket, keys)
    for api in ("list_objects", "list_objects_v2"):
        seen = []
        for page in boto.s3.get_paginator(api).paginate(Bucket=bucket, PaginationConfig={"PageSize": 4}):
            seen += listed(page)[0]
        assert seen == sorted(keys), api
        seen, prefixes = [], []
        for page in boto.s3.get_paginator(api).paginate(Bucket=bucket, Delimiter="/",
                                                        PaginationConfig={"PageSize": 2}):
            k, p = listed(page)
            seen += k
            prefixes += p
        assert (seen, prefixes) == ([f"top{i}" for i in range(5)], ["d0/", "d1/", "d2/"]), api


SPECIAL = ["a+b", "a b", "a%2Bb", "c&d<e>", "é/ü", "x/y z"]


def test_list_v1_encoding_type_url_encodes_every_name_field(boto, bucket):
    put_keys(boto, bucket, SPECIAL)
    # An explicit EncodingType: botocore then leaves the answer encoded, as sent.
    r = boto.s3.list_objects(Bucket=bucket, EncodingType="url", Prefix="a ", Delimiter=" ",
                             Marker="a ")
    assert (r["Prefix"], r["Delimiter"], r["Marker"]) == ("a%20", "%20", "a%20")
    assert r["EncodingType"] == "url"
    r = boto.s3.list_objects(Bucket=bucket, EncodingType="url", Delimiter="/", MaxKeys=4)
    assert listed(r) == (["a%20b", "a%252Bb", "a%2Bb", "c%26d%3Ce%3E"], [])
    assert r["NextMarker"] == "c%26d%3Ce%3E"
    r = boto.s3.list_objects(Bucket=bucket, EncodingType="url", Delimiter="/",
                             Marker="c&d<e>")
    assert listed(r) == ([], ["x/", "%C3%A9/"])


def test_list_v2_encoding_type_url_encodes_every_name_field(boto, bucket):
    put_keys(boto, bucket, SPECIAL)
    r = boto.s3.list_objects_v2(Bucket=bucket, EncodingType="url", Prefix="a", Delimiter="+",
                                StartAfter="a b")
    assert (r["Prefix"], r["Delimiter"], r["StartAfter"]) == ("a", "%2B", "a%20b")
    assert listed(r) == (["a%252Bb"], ["a%2B"])
    r = boto.s3.list_objects_v2(Bucket=bucket, EncodingType="url", Delimiter="/", StartAfter="x")
    assert listed(r) == ([], ["x/", "%C3%A9/"])


def test_list_an_unknown_encoding_type_is_invalid_argument(boto, bucket):
    assert _status_and_code(lambda: boto.s3.list_objects_v2(Bucket=bucket, EncodingType="base64")) \
        == (400, "InvalidArgument")


# Every printable ASCII character (in runs of 8, all in one key, and the ones URLs, XML and
# the key encoding treat specially in a key of their own) and some UTF-8.
PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F))
SPECIAL_CHARS = " %+?&\\#/<>\"'"
AWKWARD_KEYS = sorted(
    {f"r{PRINTABLE[i:i + 8]}" for i in range(0, len(PRINTABLE), 8)}
    | {f"p{c}" for c in SPECIAL_CHARS}
    | {PRINTABLE}
    | {"ünïcödé", "日本語/キー", "emoji-\U0001F600", "ß/x", "\u00a0nbsp"},
    key=lambda k: k.encode(),
)


def test_list_returns_keys_with_every_printable_character_in_byte_order(boto, bucket):
    put_keys(boto, bucket, AWKWARD_KEYS)
    for api in ("v1", "v2"):
        # boto3's own encoding-type=url and decoding, paging by 7 so markers carry the keys too.
        seen = []
        paginator = boto.s3.get_paginator("list_objects_v2" if api == "v2" else "list_objects")
        for page in paginator.paginate(Bucket=bucket, PaginationConfig={"PageSize": 7}):
            seen += listed(page)[0]
        assert seen == AWKWARD_KEYS, api
        for key in [f"p{c}" for c in SPECIAL_CHARS] + ["日本語/キー"]:
            r = list_v(boto, api, Bucket=bucket, Prefix=key)
            assert listed(r)[0] == [key], (api, key)


def test_aws_cli_lists_keys_with_every_printable_character(target, bucket, tmp_path, boto):
    put_keys(boto, bucket, AWKWARD_KEYS)
    cli = AwsCliClient(target, "when_required", tmp_path)
    for op in ("list-objects", "list-objects-v2"):
        p = cli.run("s3api", op, "--bucket", bucket, "--page-size", "9")
        assert [o["Key"] for o in json.loads(p.stdout)["Contents"]] == AWKWARD_KEYS, op
