#!/usr/bin/env python3
"""Writes the hand-made seeds of every fuzz target into fuzz/corpus/<target>/seed-*.

Run from the repository root: python3 fuzz/seeds/make_seeds.py. The object seeds are the frozen
test vectors of tests/data (tests/vectors.rs), whose key the targets use.
"""
import base64, hashlib, os, struct, zlib, glob

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


vectors = sorted(glob.glob(os.path.join(ROOT, "tests", "data", "object-*.bin")))
for path in vectors:
    name = os.path.basename(path)[:-4]
    data = open(path, "rb").read()
    put("segment_decrypt", name, data)
    put("format_header", name + "-head", data[:400])
    put("format_header", name + "-tail", data[-300:])

# Format v3 public fields (docs/format.md section 8): peek_header needs 45 + T bytes of a v3
# header; one seed ends exactly there, one a byte short.
v3 = open(os.path.join(ROOT, "tests", "data", "object-v3-1byte.bin"), "rb").read()
v3_public = 45 + v3[12]
put("format_header", "v3-public-fields", v3[:v3_public])
put("format_header", "v3-public-fields-short", v3[:v3_public - 1])

# Metadata encodings (docs/format.md section 6): u16 count, then (u16 len, name, u16 len, value).
def meta(pairs):
    out = struct.pack(">H", len(pairs))
    for k, v in pairs:
        out += struct.pack(">H", len(k)) + k + struct.pack(">H", len(v)) + v
    return out

put("format_header", "metadata-empty", meta([]))
put("format_header", "metadata-two", meta([(b"content-type", b"text/plain"), (b"x-amz-meta-a", "\u00fc".encode())]))

# format_layout: flags, then per flags the part list / total length, then ranges.
put("format_layout", "single-small", bytes([0]) + struct.pack(">I", 200) + bytes(32))
put("format_layout", "single-raw-total", bytes([2]) + struct.pack(">Q", 65_536 + 180) + bytes(32))
put("format_layout", "multipart-two", bytes([1, 2, 1]) + struct.pack(">H", 300) + bytes([0, 3]) + struct.pack(">H", 70) + bytes([1]) + bytes(32))
put("format_layout", "multipart-wide", bytes([1 | 2 | 4, 3]) + struct.pack(">IQ", 1, 2**20) + struct.pack(">IQ", 2, 0) + struct.pack(">IQ", 10_000, 5) + bytes(64))

# share_encodings
hierarchy = open(os.path.join(ROOT, "tests", "data", "key-hierarchy-v1.txt")).read()
envelope = [l.split()[1] for l in hierarchy.splitlines() if l.startswith("share_envelope")][0]
put("share_encodings", "envelope", b"\x00" + envelope.encode())
put("share_encodings", "envelope-spaces", b"\x00  " + envelope.encode() + b"\n")
payload = base64.urlsafe_b64decode(envelope.split(":", 1)[1] + "==")[:-4]
put("share_encodings", "payload", b"\x01" + payload)
key = bytes(range(32))
key_b64 = base64.b64encode(key)
md5_b64 = base64.b64encode(hashlib.md5(key).digest())
put("share_encodings", "sse-c", b"\x02\x07AES256\n" + key_b64 + b"\n" + md5_b64)
put("share_encodings", "sse-c-no-md5", b"\x02\x03AES256\n" + key_b64)
put("share_encodings", "combine", b"\x03\x02\x02" + b"\x01" + bytes(32) + b"\x02" + bytes([1] * 32))

# trustee_json: kind byte, then the body.
bodies = {
    0: '{"justification":"customer_access","reason":"audit","request_id":"req-1","object":{"bucket":"b","key":"k"}}',
    1: '{"metadata":{"tenant":"acme","key_version":1,"threshold":2,"holders":[{"name":"customer","x":1,"fingerprint":"' + "00" * 16 + '"},{"name":"trustee-a","x":2,"fingerprint":"' + "11" * 16 + '"}],"commitment":"' + "22" * 32 + '"},"holder":"trustee-a","share":"' + envelope + '","policy":{"allowed_proxies":["proxy-1"]}}',
    2: '{"ticket":"INC-1","scope":{"key_version":3},"duration_secs":3600,"reason":"disk"}',
    3: '{"request_id":"shred-1"}',
    4: '{"allowed_proxies":["p"],"allowed_justifications":["customer_access","operator_maintenance"],"rate_limit":{"per_second":10,"burst":20},"suspended":false}',
    5: '{"tenant":"acme","key_version":1,"threshold":2,"holders":[{"name":"a","x":1,"fingerprint":"' + "00" * 16 + '"},{"name":"b","x":2,"fingerprint":"' + "11" * 16 + '"}],"commitment":"' + "22" * 32 + '"}',
    6: '{"tenant":"acme","key_version":1,"holder":"trustee-a","x":2,"share":"AAAA"}',
    7: '{"tenant":"acme","key_version":1,"holder":"trustee-a","x":2,"audit_seq":5}',
    8: '{"id":"g1","tenant":"acme","ticket":"T","scope":{},"duration_secs":60,"reason":"r","requested_by":"op","requested_ms":1,"state":"approved","approved_by":"c","approved_ms":2,"expires_ms":3}',
    9: '{"kind":"shred","tenant":"acme","key_version":1,"holder":"h","share_fingerprint":"00","time_ms":1,"audit_seq":2,"audit_hash":"ab","signature":"cd"}',
    10: '{"error":"forbidden","reason":"role","message":"no"}',
    11: '{"status":"ok","trustee_key":"abc"}',
}
for kind, body in bodies.items():
    put("trustee_json", f"kind-{kind}", bytes([kind]) + body.encode())

# aws_chunked: flags (mode = flags % 3, trailer = (flags >> 2) % 3), u16 decoded length, body.
crc = base64.b64encode(struct.pack(">I", zlib.crc32(b"hello"))).decode()
put("aws_chunked", "unsigned-trailer", b"\x00" + struct.pack(">H", 5) + f"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:{crc}\r\n\r\n".encode())
put("aws_chunked", "unsigned-two-chunks", b"\x00" + struct.pack(">H", 8) + f"3\r\nhel\r\n5\r\nlo, w\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n".encode())
sig = "0" * 64
put("aws_chunked", "signed", b"\x01" + struct.pack(">H", 5) + f"5;chunk-signature={sig}\r\nhello\r\n0;chunk-signature={sig}\r\n\r\n".encode())
put("aws_chunked", "signed-trailer", b"\x02" + struct.pack(">H", 5) + f"5;chunk-signature={sig}\r\nhello\r\n0;chunk-signature={sig}\r\nx-amz-checksum-crc32:{crc}\r\nx-amz-trailer-signature:{sig}\r\n\r\n".encode())

# range_conditions: flags, u64 length, u32 last-modified, then Range, ETag, If-Match,
# If-None-Match, If-Modified-Since, If-Unmodified-Since separated by newlines.
def cond(length, fields, flags=0, mtime=1_445_412_480):
    return bytes([flags]) + struct.pack(">QI", length, mtime) + "\n".join(fields).encode()

date = "Wed, 21 Oct 2015 07:28:00 GMT"
put("range_conditions", "range", cond(1000, ["bytes=0-99", '"abc"']))
put("range_conditions", "suffix", cond(70_000, ["bytes=-65537", '"abc"']))
put("range_conditions", "open", cond(70_000, ["bytes=65536-", '"abc"', '"abc"', "*", date, date]))
put("range_conditions", "huge", cond(2**64 - 1, ["bytes=18446744073709551614-", '"abc"', "", '"abc", W/"x"', date], flags=1))
put("range_conditions", "unsatisfiable", cond(0, ["bytes=0-0"]))
