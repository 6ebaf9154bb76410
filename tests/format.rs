//! Round trips, range reads and every tamper class of the object format (v1, v2 with sealed
//! metadata, and v3 with the object id and a per-object KEK).
// Tests assert with unwrap/expect/panic by design.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ops::Range;

use proptest::prelude::*;
use treuhand::crypto::{DekContext, KeyId};
use treuhand::format::{self, Layout, MAX_HEADER_LEN, MAX_METADATA, Metadata, PartInfo};
use treuhand::secret::Kek;

const SEG: usize = 65536;
const STRIDE: usize = SEG + 16;

fn kek() -> Kek {
    Kek::from_bytes([0x11; 32])
}

fn key() -> KeyId {
    KeyId::new("acme", 1).unwrap()
}

fn data(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 8)) as u8)
        .collect()
}

fn encrypt_with(
    kek: &Kek,
    id: &KeyId,
    bucket: &str,
    object: &str,
    plain: &[u8],
    chunk: usize,
) -> Vec<u8> {
    let ctx = DekContext {
        key: id,
        bucket,
        object,
    };
    let (cipher, mut out) = format::new_object(kek, &ctx, Layout::Single).unwrap();
    let mut enc = cipher.encryptor(0);
    for piece in plain.chunks(chunk.max(1)) {
        enc.push(piece, &mut out).unwrap();
    }
    assert_eq!(enc.finish(&mut out).unwrap(), plain.len() as u64);
    out
}

fn encrypt(plain: &[u8]) -> Vec<u8> {
    encrypt_with(&kek(), &key(), "bucket", "object", plain, 10_000)
}

fn decrypt_with(
    kek: &Kek,
    id: &KeyId,
    bucket: &str,
    object: &str,
    stored: &[u8],
    range: Option<Range<u64>>,
    feed: usize,
) -> Result<Vec<u8>, format::Error> {
    let ctx = DekContext {
        key: id,
        bucket,
        object,
    };
    let head = &stored[..stored.len().min(MAX_HEADER_LEN)];
    let (cipher, _) = format::open_object(kek, &ctx, head)?;
    let layout = cipher.single_layout(stored.len() as u64)?;
    let range = range.unwrap_or(0..layout.plaintext_len());
    let (ct, mut dec) = layout.decryptor(range)?;
    let mut out = Vec::new();
    for piece in stored[ct.start as usize..ct.end as usize].chunks(feed.max(1)) {
        dec.push(piece, &mut out)?;
    }
    dec.finish()?;
    Ok(out)
}

fn decrypt(stored: &[u8]) -> Result<Vec<u8>, format::Error> {
    decrypt_with(&kek(), &key(), "bucket", "object", stored, None, 7_777)
}

fn assert_fails(result: Result<Vec<u8>, format::Error>, what: &str) {
    match result {
        Err(format::Error::DecryptionFailed) => {}
        other => panic!(
            "{what}: expected DecryptionFailed, got {:?}",
            other.map(|v| v.len())
        ),
    }
}

/// Opens `stored` as the object `bucket/object` under the test key.
fn open(stored: &[u8]) -> format::ObjectCipher {
    let id = key();
    let ctx = DekContext {
        key: &id,
        bucket: "bucket",
        object: "object",
    };
    format::open_object(&kek(), &ctx, stored).unwrap().0
}

#[test]
fn round_trip_at_segment_boundaries() {
    for len in [
        0,
        1,
        SEG - 1,
        SEG,
        SEG + 1,
        2 * SEG,
        3 * SEG + 17,
        5 * 1024 * 1024 + 3,
    ] {
        let plain = data(len);
        for chunk in [1 << 20, SEG, 4096, 333] {
            if len > 200_000 && chunk < 4096 {
                continue;
            }
            let stored = encrypt_with(&kek(), &key(), "b", "o", &plain, chunk);
            let back = decrypt_with(&kek(), &key(), "b", "o", &stored, None, chunk).unwrap();
            assert_eq!(back, plain, "len {len} chunk {chunk}");
        }
    }
}

#[test]
fn ciphertext_length_determines_plaintext_length() {
    for len in [0usize, 1, SEG, SEG + 1, 4 * SEG] {
        let stored = encrypt(&data(len));
        let segments = len / SEG + 1;
        let header = stored.len() - len - 16 * segments;
        assert_eq!(header, 112 + "acme".len());
    }
}

#[test]
fn every_range_across_segment_edges_decrypts_only_touched_segments() {
    let len = 3 * SEG + 100;
    let plain = data(len);
    let stored = encrypt(&plain);
    let points = [
        0,
        1,
        SEG - 1,
        SEG,
        SEG + 1,
        2 * SEG - 1,
        2 * SEG,
        3 * SEG,
        3 * SEG + 99,
        len,
    ];
    let ctx_key = key();
    let ctx = DekContext {
        key: &ctx_key,
        bucket: "bucket",
        object: "object",
    };
    let (cipher, header_len) =
        format::open_object(&kek(), &ctx, &stored[..MAX_HEADER_LEN]).unwrap();
    let layout = cipher.single_layout(stored.len() as u64).unwrap();
    for &a in &points {
        for &b in &points {
            if a >= b {
                continue;
            }
            let got = decrypt_with(
                &kek(),
                &key(),
                "bucket",
                "object",
                &stored,
                Some(a as u64..b as u64),
                5000,
            )
            .unwrap();
            assert_eq!(got, &plain[a..b], "range {a}..{b}");
            let ct = layout.ciphertext_range(a as u64..b as u64).unwrap();
            let first = a / SEG;
            let last = (b - 1) / SEG;
            assert_eq!(
                ct.start as usize,
                header_len + first * STRIDE,
                "start {a}..{b}"
            );
            let last_len = (len - last * SEG).min(SEG);
            assert_eq!(
                ct.end as usize,
                header_len + last * STRIDE + last_len + 16,
                "end {a}..{b}"
            );
        }
    }
    assert!(matches!(
        layout.ciphertext_range(0..len as u64 + 1),
        Err(format::Error::InvalidRange { .. })
    ));
}

#[test]
fn flipped_bit_anywhere_is_detected() {
    let plain = data(2 * SEG + 10);
    let stored = encrypt(&plain);
    // Every header byte, then a sample of body and tag bytes of each segment.
    let header_len = format::Header::parse(&stored).unwrap().2;
    let mut positions: Vec<usize> = (0..header_len).collect();
    positions.extend((0..stored.len()).step_by(4099));
    positions.extend([
        stored.len() - 1,
        stored.len() - 16,
        116 + SEG,
        116 + SEG + 15,
    ]);
    for pos in positions {
        let mut bad = stored.clone();
        bad[pos] ^= 0x01;
        assert_fails(decrypt(&bad), &format!("bit flip at {pos}"));
    }
}

#[test]
fn truncation_at_and_between_segment_boundaries_is_detected() {
    let plain = data(3 * SEG + 5);
    let stored = encrypt(&plain);
    let header = 116;
    let mut cuts = vec![0, 10, header - 1, header, header + 1, header + 16];
    for s in 1..=3 {
        let boundary = header + s * STRIDE;
        cuts.extend([
            boundary - 17,
            boundary - 16,
            boundary - 1,
            boundary,
            boundary + 1,
            boundary + 16,
        ]);
    }
    cuts.push(stored.len() - 1);
    for cut in cuts {
        if cut >= stored.len() {
            continue;
        }
        let truncated = &stored[..cut];
        let result = std::panic::catch_unwind(|| decrypt(truncated));
        let result = result.unwrap_or_else(|_| panic!("panic on truncation at {cut}"));
        assert_fails(result, &format!("truncation at {cut}"));
    }
}

#[test]
fn dropped_duplicated_and_reordered_segments_are_detected() {
    let plain = data(3 * SEG + 5);
    let stored = encrypt(&plain);
    let header = 116;
    let seg = |i: usize| &stored[header + i * STRIDE..header + (i + 1) * STRIDE];
    let tail = &stored[header + 3 * STRIDE..];
    let head = &stored[..header];
    let dropped = [head, seg(0), seg(2), tail].concat();
    assert_fails(decrypt(&dropped), "dropped segment");
    let dropped_last = [head, seg(0), seg(1), seg(2)].concat();
    assert_fails(decrypt(&dropped_last), "dropped final segment");
    let duplicated = [head, seg(0), seg(1), seg(1), seg(2), tail].concat();
    assert_fails(decrypt(&duplicated), "duplicated segment");
    let reordered = [head, seg(1), seg(0), seg(2), tail].concat();
    assert_fails(decrypt(&reordered), "reordered segments");
    let doubled_final = [stored.as_slice(), tail].concat();
    assert_fails(decrypt(&doubled_final), "doubled final segment");
}

#[test]
fn trailing_bytes_are_detected() {
    let stored = encrypt(&data(SEG + 3));
    for extra in [1usize, 15, 16, 17, STRIDE] {
        let mut bad = stored.clone();
        bad.extend(std::iter::repeat_n(0u8, extra));
        assert_fails(decrypt(&bad), &format!("{extra} trailing bytes"));
    }
}

#[test]
fn trailing_bytes_pushed_beyond_the_plan_are_rejected() {
    let stored = encrypt(&data(100));
    let cipher = open(&stored);
    let layout = cipher.single_layout(stored.len() as u64).unwrap();
    let (ct, mut dec) = layout.decryptor(0..100).unwrap();
    let mut out = Vec::new();
    let mut fed = stored[ct.start as usize..].to_vec();
    fed.push(0);
    assert!(dec.push(&fed, &mut out).is_err());
}

#[test]
fn ciphertext_moved_to_another_object_bucket_or_tenant_is_rejected() {
    let plain = data(1000);
    let stored = encrypt_with(&kek(), &key(), "bucket", "object", &plain, 1000);
    assert_fails(
        decrypt_with(&kek(), &key(), "bucket", "other", &stored, None, 100),
        "other key",
    );
    assert_fails(
        decrypt_with(&kek(), &key(), "other", "object", &stored, None, 100),
        "other bucket",
    );
    let other_tenant = KeyId::new("evil", 1).unwrap();
    assert_fails(
        decrypt_with(
            &kek(),
            &other_tenant,
            "bucket",
            "object",
            &stored,
            None,
            100,
        ),
        "other tenant",
    );
    // Another tenant's KEK with the header rewritten to name that tenant still fails.
    assert_fails(
        decrypt_with(
            &Kek::from_bytes([0x22; 32]),
            &key(),
            "bucket",
            "object",
            &stored,
            None,
            100,
        ),
        "other kek",
    );
}

#[test]
fn wrong_key_version_is_rejected() {
    let stored = encrypt(&data(1000));
    let v2 = KeyId::new("acme", 2).unwrap();
    assert_fails(
        decrypt_with(&kek(), &v2, "bucket", "object", &stored, None, 100),
        "version 2",
    );
    // Rewriting the version byte in the header is caught by the unwrap AAD and the header MAC.
    let mut bad = stored.clone();
    bad[11] = 2;
    assert_fails(
        decrypt_with(&kek(), &v2, "bucket", "object", &bad, None, 100),
        "rewritten version",
    );
}

#[test]
fn no_plaintext_is_emitted_from_a_tampered_segment() {
    let plain = data(3 * SEG);
    let mut stored = encrypt(&plain);
    stored[116 + STRIDE + 5] ^= 0x80; // inside segment 1
    let cipher = open(&stored);
    let layout = cipher.single_layout(stored.len() as u64).unwrap();
    let (ct, mut dec) = layout.decryptor(0..plain.len() as u64).unwrap();
    let mut out = Vec::new();
    let err = dec.push(&stored[ct.start as usize..], &mut out);
    assert!(err.is_err());
    // Only segment 0, which authenticated, may have been emitted.
    assert_eq!(out, &plain[..SEG]);
}

fn multipart_object(parts: &[(u32, Vec<u8>)], listed: &[u32]) -> (Vec<u8>, Vec<u8>) {
    let id = key();
    let ctx = DekContext {
        key: &id,
        bucket: "bucket",
        object: "big",
    };
    let (cipher, header) = format::new_object(&kek(), &ctx, Layout::Multipart).unwrap();
    // Parts are encrypted independently, in any order.
    let mut staged = std::collections::BTreeMap::new();
    for (number, plain) in parts.iter().rev() {
        let mut run = Vec::new();
        let mut enc = cipher.encryptor(*number);
        enc.push(plain, &mut run).unwrap();
        enc.finish(&mut run).unwrap();
        staged.insert(*number, (run, plain.len() as u64));
    }
    let mut stored = header;
    let mut infos = Vec::new();
    let mut expected = Vec::new();
    for number in listed {
        let (run, len) = &staged[number];
        stored.extend_from_slice(run);
        infos.push(PartInfo {
            part_number: *number,
            plaintext_len: *len,
        });
        expected.extend_from_slice(&parts.iter().find(|(n, _)| n == number).unwrap().1);
    }
    stored.extend(cipher.footer(&infos).unwrap());
    (stored, expected)
}

fn decrypt_multipart(stored: &[u8], range: Option<Range<u64>>) -> Result<Vec<u8>, format::Error> {
    let id = key();
    let ctx = DekContext {
        key: &id,
        bucket: "bucket",
        object: "big",
    };
    let (cipher, _) =
        format::open_object(&kek(), &ctx, &stored[..stored.len().min(MAX_HEADER_LEN)])?;
    let tail = &stored[stored.len().saturating_sub(format::FOOTER_TAIL_LEN)..];
    let footer_len = format::footer_len_from_tail(tail)?;
    let footer = &stored[stored
        .len()
        .checked_sub(footer_len)
        .ok_or(format::Error::DecryptionFailed)?..];
    let layout = cipher.multipart_layout(footer, stored.len() as u64)?;
    let range = range.unwrap_or(0..layout.plaintext_len());
    let (ct, mut dec) = layout.decryptor(range)?;
    let mut out = Vec::new();
    dec.push(&stored[ct.start as usize..ct.end as usize], &mut out)?;
    dec.finish()?;
    Ok(out)
}

#[test]
fn multipart_parts_encrypted_out_of_order_read_back_in_listed_order() {
    let parts = vec![
        (1, data(5 * SEG + 7)),
        (2, data(3 * SEG)),
        (4, data(1)),
        (7, data(SEG + 1)),
    ];
    let (stored, expected) = multipart_object(&parts, &[1, 2, 4, 7]);
    assert_eq!(decrypt_multipart(&stored, None).unwrap(), expected);
    // Ranges crossing part and segment edges.
    let edges = [
        0u64,
        1,
        SEG as u64,
        5 * SEG as u64 + 6,
        5 * SEG as u64 + 7,
        8 * SEG as u64 + 7,
        8 * SEG as u64 + 8,
    ];
    for &a in &edges {
        for &b in &edges {
            if a < b && b <= expected.len() as u64 {
                let got = decrypt_multipart(&stored, Some(a..b)).unwrap();
                assert_eq!(got, &expected[a as usize..b as usize], "{a}..{b}");
            }
        }
    }
}

#[test]
fn multipart_subset_of_parts_and_tampering_are_handled() {
    let parts = vec![(1, data(SEG + 3)), (2, data(10)), (3, data(SEG))];
    let (stored, expected) = multipart_object(&parts, &[1, 3]);
    assert_eq!(decrypt_multipart(&stored, None).unwrap(), expected);
    // Swapping two runs, flipping footer bits, truncating and appending all fail.
    let (full, _) = multipart_object(&parts, &[1, 2, 3]);
    let mut flipped = full.clone();
    let n = flipped.len();
    flipped[n - 40] ^= 1;
    assert_fails(decrypt_multipart(&flipped, None), "footer flip");
    assert_fails(decrypt_multipart(&full[..n - 1], None), "footer truncation");
    let mut extra = full.clone();
    extra.insert(200, 0);
    assert_fails(decrypt_multipart(&extra, None), "inserted byte");
    // A single-run object cannot be read as multipart and vice versa.
    let single = encrypt(&data(10));
    assert!(decrypt_multipart(&single, None).is_err());
}

#[test]
fn multipart_footer_rejects_bad_part_lists() {
    let id = key();
    let ctx = DekContext {
        key: &id,
        bucket: "b",
        object: "o",
    };
    let (cipher, _) = format::new_object(&kek(), &ctx, Layout::Multipart).unwrap();
    let p = |n| PartInfo {
        part_number: n,
        plaintext_len: 1,
    };
    for bad in [
        vec![],
        vec![p(2), p(1)],
        vec![p(1), p(1)],
        vec![p(0)],
        vec![p(10_001)],
    ] {
        assert!(matches!(
            cipher.footer(&bad),
            Err(format::Error::InvalidParts(_))
        ));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn encrypt_then_decrypt_is_identity_for_any_size_chunking_and_range(
        len in 0usize..(4 * SEG + 100),
        chunk in 1usize..200_000,
        feed in 1usize..200_000,
        a in any::<prop::sample::Index>(),
        b in any::<prop::sample::Index>(),
    ) {
        let plain = data(len);
        let stored = encrypt_with(&kek(), &key(), "b", "o", &plain, chunk);
        let whole = decrypt_with(&kek(), &key(), "b", "o", &stored, None, feed).unwrap();
        prop_assert_eq!(&whole, &plain);
        if len > 0 {
            let (x, y) = (a.index(len + 1), b.index(len + 1));
            let (lo, hi) = (x.min(y), x.max(y));
            let part = decrypt_with(&kek(), &key(), "b", "o", &stored, Some(lo as u64..hi as u64), feed).unwrap();
            prop_assert_eq!(&part[..], &plain[lo..hi]);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_never_decrypt(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        prop_assert!(decrypt(&bytes).is_err());
    }
}

#[test]
fn truncation_of_segment_multiple_objects_is_detected() {
    // An object of exactly two full segments ends in an empty final segment; cutting anywhere,
    // including so that a full segment's first 16 bytes look like an empty final segment, fails.
    let stored = encrypt(&data(2 * SEG));
    let header = 116;
    for boundary in [header + STRIDE, header + 2 * STRIDE, stored.len()] {
        for delta in [-17i64, -16, -1, 1, 15, 16, 17] {
            let cut = boundary as i64 + delta;
            if cut <= 0 || cut as usize >= stored.len() {
                continue;
            }
            assert_fails(decrypt(&stored[..cut as usize]), &format!("cut at {cut}"));
        }
    }
}

#[test]
fn in_place_paths_produce_the_same_format_as_push() {
    let plain = data(3 * SEG + 123);
    let id = key();
    let ctx = DekContext {
        key: &id,
        bucket: "bucket",
        object: "object",
    };
    let (cipher, mut stored) = format::new_object(&kek(), &ctx, Layout::Single).unwrap();
    let mut enc = cipher.encryptor(0);
    let mut segments: Vec<Vec<u8>> = plain.chunks(SEG).map(<[u8]>::to_vec).collect();
    let mut last = segments.pop().unwrap();
    for segment in &mut segments {
        let tag = enc.seal_segment_in_place(segment).unwrap();
        stored.extend_from_slice(segment);
        stored.extend_from_slice(&tag);
    }
    // A whole segment is refused as the final one, a partial one as a middle one.
    let mut wrong = vec![0u8; 10];
    assert!(matches!(
        enc.seal_segment_in_place(&mut wrong),
        Err(format::Error::Misuse(_))
    ));
    let (tag, len) = enc.finish_in_place(&mut last).unwrap();
    stored.extend_from_slice(&last);
    stored.extend_from_slice(&tag);
    assert_eq!(len, plain.len() as u64);
    // Readable by the buffered decryptor ...
    assert_eq!(decrypt(&stored).unwrap(), plain);
    // ... and by the in-place decryptor, which also catches a flipped bit.
    let (reader, _) = format::open_object(&kek(), &ctx, &stored).unwrap();
    let layout = reader.single_layout(stored.len() as u64).unwrap();
    let (range, mut dec) = layout.decryptor(10..plain.len() as u64).unwrap();
    let mut pos = range.start as usize;
    let mut out = Vec::new();
    while let Some(n) = dec.next_segment_len() {
        let mut segment = stored[pos..pos + n].to_vec();
        let emit = dec.open_in_place(&mut segment).unwrap();
        out.extend_from_slice(&segment[emit]);
        pos += n;
    }
    dec.finish().unwrap();
    assert_eq!(out, &plain[10..]);
    let (range, mut dec) = layout.decryptor(0..plain.len() as u64).unwrap();
    let n = dec.next_segment_len().unwrap();
    let mut segment = stored[range.start as usize..range.start as usize + n].to_vec();
    segment[100] ^= 1;
    assert!(matches!(
        dec.open_in_place(&mut segment),
        Err(format::Error::DecryptionFailed)
    ));
}

fn sample_metadata() -> Metadata {
    let mut m = Metadata::new();
    m.insert("content-type", "text/html; charset=utf-8");
    m.insert("cache-control", "max-age=60");
    m.insert("x-amz-meta-mtime", "1700000000.123456789");
    m.insert("x-amz-meta-Secret-Note", "größer als ein Geheimnis");
    m
}

/// Encrypts `plain` as a single-run object with `metadata`.
fn encrypt_with_metadata(plain: &[u8], metadata: &Metadata) -> Vec<u8> {
    let id = key();
    let ctx = DekContext {
        key: &id,
        bucket: "bucket",
        object: "object",
    };
    let (cipher, mut out) =
        format::new_object_with_metadata(&kek(), &ctx, Layout::Single, metadata).unwrap();
    assert_eq!(cipher.metadata(), metadata);
    let mut enc = cipher.encryptor(0);
    enc.push(plain, &mut out).unwrap();
    enc.finish(&mut out).unwrap();
    out
}

fn open_metadata(stored: &[u8]) -> Result<Metadata, format::Error> {
    let id = key();
    let ctx = DekContext {
        key: &id,
        bucket: "bucket",
        object: "object",
    };
    let head = &stored[..stored.len().min(MAX_HEADER_LEN)];
    let (cipher, _) = format::open_object(&kek(), &ctx, head)?;
    Ok(cipher.metadata().clone())
}

#[test]
fn v2_round_trip_carries_metadata_and_the_body() {
    let metadata = sample_metadata();
    for len in [0, 1, SEG, SEG + 1] {
        let plain = data(len);
        let stored = encrypt_with_metadata(&plain, &metadata);
        assert_eq!(stored[4], 2, "objects with metadata are format v2");
        let (header, _, header_len) = format::Header::parse(&stored).unwrap();
        let m = u32::from_be_bytes(stored[80 + 4..84 + 4].try_into().unwrap()) as usize;
        assert_eq!(header_len, 112 + "acme".len() + 4 + m);
        assert_eq!(m, metadata.encode().unwrap().len() + 16);
        assert_eq!(header.format_version(), 2);
        assert_eq!(
            format::header_len_hint(&stored[..format::HEADER_PROBE_LEN.min(stored.len())]),
            Some(header_len)
        );
        assert_eq!(decrypt(&stored).unwrap(), plain);
        let got = open_metadata(&stored).unwrap();
        assert_eq!(got, metadata);
        assert_eq!(
            got.get("x-amz-meta-secret-note"),
            Some("größer als ein Geheimnis")
        );
    }
}

#[test]
fn metadata_is_not_stored_in_plaintext() {
    let stored = encrypt_with_metadata(b"body", &sample_metadata());
    for needle in [
        &b"text/html"[..],
        b"max-age",
        b"mtime",
        b"Geheimnis",
        b"content-type",
    ] {
        assert!(
            !stored.windows(needle.len()).any(|w| w == needle),
            "{} visible in the stored bytes",
            String::from_utf8_lossy(needle)
        );
    }
}

#[test]
fn objects_without_metadata_stay_v1_and_open_with_empty_metadata() {
    let plain = data(100);
    let stored = encrypt(&plain);
    assert_eq!(stored[4], 1);
    assert_eq!(
        format::Header::parse(&stored).unwrap().2,
        112 + "acme".len()
    );
    assert_eq!(
        format::header_len_hint(&stored[..format::HEADER_PROBE_LEN]),
        Some(116)
    );
    assert!(open_metadata(&stored).unwrap().is_empty());
    let explicit = encrypt_with_metadata(&plain, &Metadata::new());
    assert_eq!(explicit[4], 1);
    assert_eq!(decrypt(&explicit).unwrap(), plain);
}

#[test]
fn every_single_byte_tamper_of_a_v2_header_fails() {
    let plain = data(300);
    let stored = encrypt_with_metadata(&plain, &sample_metadata());
    let header_len = format::Header::parse(&stored).unwrap().2;
    // Every byte: fixed fields, tenant, wrapped DEK, nonce prefix, M, sealed block, MAC.
    for pos in 0..header_len {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut bad = stored.clone();
            bad[pos] ^= flip;
            assert_fails(decrypt(&bad), &format!("xor {flip:#x} at {pos}"));
            assert!(
                matches!(open_metadata(&bad), Err(format::Error::DecryptionFailed)),
                "metadata opened after xor {flip:#x} at {pos}"
            );
        }
    }
    // Turning a v2 header into a v1 one (version byte 1, M and the block cut out) fails too.
    let m_at = 80 + "acme".len();
    let mut downgraded = stored[..m_at].to_vec();
    downgraded[4] = 1;
    downgraded.extend_from_slice(&stored[header_len - 32..]);
    assert_fails(decrypt(&downgraded), "v2 downgraded to v1");
}

#[test]
fn sealed_metadata_cannot_be_moved_between_objects() {
    let a = encrypt_with_metadata(b"a", &sample_metadata());
    let b = encrypt_with_metadata(b"b", &sample_metadata());
    let len = format::Header::parse(&a).unwrap().2;
    let m_at = 84 + "acme".len();
    // Same length (same metadata), different DEK: the block of a in b's header must fail.
    let mut mixed = b.clone();
    mixed[m_at..len - 32].copy_from_slice(&a[m_at..len - 32]);
    assert_fails(decrypt(&mixed), "sealed block moved between objects");
}

#[test]
fn metadata_too_large_is_a_typed_error() {
    let id = key();
    let ctx = DekContext {
        key: &id,
        bucket: "bucket",
        object: "object",
    };
    let mut big = Metadata::new();
    big.insert("x-amz-meta-big", &"x".repeat(MAX_METADATA));
    for layout in [Layout::Single, Layout::Multipart] {
        assert!(matches!(
            format::new_object_with_metadata(&kek(), &ctx, layout, &big),
            Err(format::Error::MetadataTooLarge {
                max: MAX_METADATA,
                ..
            })
        ));
    }
    // The largest allowed block still fits in MAX_HEADER_LEN with the longest tenant id.
    let mut largest = Metadata::new();
    largest.insert("a", &"x".repeat(MAX_METADATA - 7));
    let long = KeyId::new(&"t".repeat(63), 1).unwrap();
    let ctx = DekContext {
        key: &long,
        bucket: "bucket",
        object: "object",
    };
    let (cipher, header) =
        format::new_object_with_metadata(&kek(), &ctx, Layout::Single, &largest).unwrap();
    // v3 (§8) adds the 32-byte object id: the largest header of any version is a v3 one.
    assert_eq!(header.len(), MAX_HEADER_LEN - 32);
    assert_eq!(cipher.header_len(), MAX_HEADER_LEN - 32);
    let object_id = treuhand::crypto::oprf::ObjectId([1; 32]);
    let (cipher, header) =
        format::new_object_v3(&kek(), &ctx, object_id, Layout::Single, &largest).unwrap();
    assert_eq!(header.len(), MAX_HEADER_LEN);
    assert_eq!(cipher.header_len(), MAX_HEADER_LEN);
    assert!(matches!(
        format::new_object_v3(&kek(), &ctx, object_id, Layout::Single, &big),
        Err(format::Error::MetadataTooLarge { .. })
    ));
}

#[test]
fn v2_multipart_objects_carry_metadata_in_the_header() {
    let id = key();
    let ctx = DekContext {
        key: &id,
        bucket: "bucket",
        object: "big",
    };
    let metadata = sample_metadata();
    let (cipher, mut stored) =
        format::new_object_with_metadata(&kek(), &ctx, Layout::Multipart, &metadata).unwrap();
    let plain = data(SEG + 5);
    let mut enc = cipher.encryptor(2);
    enc.push(&plain, &mut stored).unwrap();
    enc.finish(&mut stored).unwrap();
    stored.extend(
        cipher
            .footer(&[PartInfo {
                part_number: 2,
                plaintext_len: plain.len() as u64,
            }])
            .unwrap(),
    );
    assert_eq!(decrypt_multipart(&stored, None).unwrap(), plain);
    let (opened, _) = format::open_object(&kek(), &ctx, &stored).unwrap();
    assert_eq!(opened.metadata(), &metadata);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn any_metadata_round_trips_through_a_v2_header(
        entries in proptest::collection::btree_map("[a-zA-Z0-9-]{1,20}", "\\PC{0,40}", 0..12),
        len in 0usize..(SEG + 10),
    ) {
        let mut metadata = Metadata::new();
        for (k, v) in &entries {
            metadata.insert(k, v);
        }
        let plain = data(len);
        let stored = encrypt_with_metadata(&plain, &metadata);
        prop_assert_eq!(stored[4], if metadata.is_empty() { 1 } else { 2 });
        prop_assert_eq!(decrypt(&stored).unwrap(), plain);
        prop_assert_eq!(open_metadata(&stored).unwrap(), metadata);
    }
}

// ---------------------------------------------------------------------------------------------
// Format v3 (docs/format.md §8): object id, per-object KEK, sealed metadata always present.
// ---------------------------------------------------------------------------------------------

mod v3 {
    use super::*;
    use treuhand::crypto::oprf::{self, ObjectId, ObjectIdentity, OprfKey};
    use treuhand::format::HeaderInfo;

    fn tenant_key() -> OprfKey {
        OprfKey::from_bytes(&[0x07; 32]).unwrap()
    }

    fn identity(object: &str, id: ObjectId) -> ObjectIdentity {
        ObjectIdentity {
            tenant: "acme".into(),
            key_version: 1,
            bucket: "bucket".into(),
            key: object.into(),
            id,
        }
    }

    /// The per-object KEK of `bucket/object` with object id `id`, as the proxy derives it.
    fn object_kek(object: &str, id: ObjectId) -> Kek {
        let identity = identity(object, id);
        let secret = tenant_key().evaluate_unsplit(&identity).unwrap();
        oprf::object_kek(&secret, &identity).unwrap()
    }

    fn id(byte: u8) -> ObjectId {
        ObjectId([byte; 32])
    }

    /// A new v3 object `bucket/object` (id `id`) of `layout` and its header bytes.
    fn new_v3(
        object: &str,
        id: ObjectId,
        layout: Layout,
        metadata: &Metadata,
    ) -> (format::ObjectCipher, Vec<u8>) {
        let key = key();
        let ctx = DekContext {
            key: &key,
            bucket: "bucket",
            object,
        };
        format::new_object_v3(&object_kek(object, id), &ctx, id, layout, metadata).unwrap()
    }

    /// A single-run v3 object of `plain`.
    fn encrypt_v3(plain: &[u8], metadata: &Metadata) -> Vec<u8> {
        let (cipher, mut out) = new_v3("object", id(0xa5), Layout::Single, metadata);
        let mut enc = cipher.encryptor(0);
        enc.push(plain, &mut out).unwrap();
        enc.finish(&mut out).unwrap();
        out
    }

    /// Reads a stored single-run v3 object as the proxy does: peek the object id without a
    /// key, derive that object's KEK, open.
    fn decrypt_v3(stored: &[u8]) -> Result<(Vec<u8>, Metadata), format::Error> {
        let info = format::peek_header(&stored[..stored.len().min(format::HEADER_PROBE_LEN)])?;
        let id = info.object_id.ok_or(format::Error::DecryptionFailed)?;
        decrypt_v3_with(&object_kek("object", id), stored)
    }

    fn decrypt_v3_with(kek: &Kek, stored: &[u8]) -> Result<(Vec<u8>, Metadata), format::Error> {
        let key = key();
        let ctx = DekContext {
            key: &key,
            bucket: "bucket",
            object: "object",
        };
        let head = &stored[..stored.len().min(MAX_HEADER_LEN)];
        let (cipher, _) = format::open_object(kek, &ctx, head)?;
        let layout = cipher.single_layout(stored.len() as u64)?;
        let (ct, mut dec) = layout.decryptor(0..layout.plaintext_len())?;
        let mut out = Vec::new();
        dec.push(&stored[ct.start as usize..ct.end as usize], &mut out)?;
        dec.finish()?;
        Ok((out, cipher.metadata().clone()))
    }

    #[test]
    fn v3_single_round_trip_with_and_without_metadata() {
        for metadata in [Metadata::new(), sample_metadata()] {
            for len in [0, 1, SEG - 1, SEG, SEG + 1] {
                let plain = data(len);
                let stored = encrypt_v3(&plain, &metadata);
                assert_eq!(stored[4], 3, "new_object_v3 writes format v3");
                let (cipher, _) = format::open_object(
                    &object_kek("object", id(0xa5)),
                    &DekContext {
                        key: &key(),
                        bucket: "bucket",
                        object: "object",
                    },
                    &stored,
                )
                .unwrap();
                assert_eq!(cipher.format_version(), 3);
                assert_eq!(cipher.object_id(), Some(id(0xa5)));
                let (back, got) = decrypt_v3(&stored).unwrap();
                assert_eq!(back, plain, "{len}");
                assert_eq!(got, metadata);
            }
        }
    }

    #[test]
    fn a_v3_object_without_metadata_keeps_an_empty_sealed_block() {
        let stored = encrypt_v3(b"body", &Metadata::new());
        let t = "acme".len();
        // The object id follows the tenant id; M sits after wrapped DEK and nonce prefix.
        assert_eq!(&stored[13 + t..45 + t], &[0xa5; 32]);
        let m = u32::from_be_bytes(stored[112 + t..116 + t].try_into().unwrap()) as usize;
        assert_eq!(
            m,
            16 + 2,
            "the empty set encodes to two bytes, sealed with its tag"
        );
        let header_len = 148 + t + m;
        assert_eq!(format::Header::parse(&stored).unwrap().2, header_len);
        assert_eq!(
            format::header_len_hint(&stored[..format::HEADER_PROBE_LEN.min(stored.len())]),
            Some(header_len)
        );
        assert_eq!(stored.len(), header_len + 4 + 16);
        assert!(decrypt_v3(&stored).unwrap().1.is_empty());
    }

    #[test]
    fn v3_metadata_is_not_stored_in_plaintext() {
        let stored = encrypt_v3(b"body", &sample_metadata());
        for needle in [&b"text/html"[..], b"max-age", b"Geheimnis", b"content-type"] {
            assert!(!stored.windows(needle.len()).any(|w| w == needle));
        }
    }

    #[test]
    fn every_single_byte_tamper_of_a_v3_header_fails_including_the_object_id() {
        let plain = data(300);
        let stored = encrypt_v3(&plain, &sample_metadata());
        let header_len = format::Header::parse(&stored).unwrap().2;
        let original = object_kek("object", id(0xa5));
        // Every byte: fixed fields, tenant, object id, wrapped DEK, nonce prefix, M, sealed
        // block, MAC.
        for pos in 0..header_len {
            for flip in [0x01u8, 0x80] {
                let mut bad = stored.clone();
                bad[pos] ^= flip;
                // The KEK the proxy would derive from the (altered) header, and the KEK of the
                // genuine object: neither opens it.
                let peeked = decrypt_v3(&bad);
                assert!(
                    matches!(
                        peeked,
                        Err(format::Error::DecryptionFailed
                            | format::Error::NotAnObject
                            | format::Error::HeaderTruncated { .. })
                    ),
                    "opened after xor {flip:#x} at {pos}"
                );
                assert!(
                    matches!(
                        decrypt_v3_with(&original, &bad),
                        Err(format::Error::DecryptionFailed)
                    ),
                    "opened with the genuine KEK after xor {flip:#x} at {pos}"
                );
            }
        }
        assert_eq!(decrypt_v3(&stored).unwrap().0, plain);
    }

    #[test]
    fn a_v3_header_opened_with_the_kek_of_another_object_id_fails() {
        let stored = encrypt_v3(b"secret body", &Metadata::new());
        assert!(decrypt_v3_with(&object_kek("object", id(0xa5)), &stored).is_ok());
        for other in [id(0xa4), id(0x00), {
            let mut one_bit = [0xa5; 32];
            one_bit[31] ^= 1;
            ObjectId(one_bit)
        }] {
            assert!(matches!(
                decrypt_v3_with(&object_kek("object", other), &stored),
                Err(format::Error::DecryptionFailed)
            ));
        }
        // The same id under another object key of the bucket is another identity, too.
        assert!(matches!(
            decrypt_v3_with(&object_kek("other-object", id(0xa5)), &stored),
            Err(format::Error::DecryptionFailed)
        ));
    }

    #[test]
    fn a_v3_object_id_swapped_with_a_consistent_kek_still_fails() {
        // The attacker writes another id into the header and the proxy derives the KEK of that
        // id: the wrapped DEK does not unwrap, and the MAC would not verify either.
        let stored = encrypt_v3(b"secret body", &Metadata::new());
        let t = "acme".len();
        let mut swapped = stored.clone();
        swapped[13 + t..45 + t].copy_from_slice(&[0x5a; 32]);
        assert_eq!(
            format::peek_header(&swapped).unwrap().object_id,
            Some(id(0x5a))
        );
        assert!(matches!(
            decrypt_v3(&swapped),
            Err(format::Error::DecryptionFailed)
        ));
    }

    #[test]
    fn peek_header_returns_the_public_fields_of_every_version() {
        let v1 = encrypt(b"x");
        let v2 = encrypt_with_metadata(b"x", &sample_metadata());
        let v3 = encrypt_v3(b"x", &Metadata::new());
        let t = "acme".len();
        for (stored, version, object_id, need) in [
            (&v1, 1, None, 13 + t),
            (&v2, 2, None, 13 + t),
            (&v3, 3, Some(id(0xa5)), 45 + t),
        ] {
            let expected = HeaderInfo {
                version,
                tenant: "acme".into(),
                key_version: 1,
                object_id,
            };
            assert_eq!(format::peek_header(stored).unwrap(), expected);
            // Exactly the documented number of bytes suffices, and the probe always does.
            assert_eq!(format::peek_header(&stored[..need]).unwrap(), expected);
            assert_eq!(
                format::peek_header(&stored[..format::HEADER_PROBE_LEN.min(stored.len())]).unwrap(),
                expected
            );
            // One byte less is refused as truncation, naming what is needed.
            for short in 0..need {
                match format::peek_header(&stored[..short]) {
                    Err(format::Error::HeaderTruncated { need: n }) => {
                        assert!(n > short && n <= need, "{short}: need {n}")
                    }
                    other => panic!("v{version}, {short} bytes: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn peek_header_refuses_garbage_with_a_typed_error() {
        for garbage in [
            &b"not a treuhand object at all, but long enough"[..],
            b"TRHD\x04\x01\x10\x00\x00\x00\x00\x01\x04acme",
            b"TRHD\x03\x01\x10\x00\x00\x00\x00\x01\x00",
            b"TRHD\x03\x01\x10\x00\x00\x00\x00\x01\x04AC/E",
            b"\xff",
        ] {
            assert!(
                matches!(
                    format::peek_header(garbage),
                    Err(format::Error::NotAnObject)
                ),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn v3_refuses_to_write_layout_1_but_reads_it() {
        let key = key();
        let ctx = DekContext {
            key: &key,
            bucket: "bucket",
            object: "object",
        };
        let kek = object_kek("object", id(1));
        assert!(matches!(
            format::new_object_v3(&kek, &ctx, id(1), Layout::Multipart, &Metadata::new()),
            Err(format::Error::Misuse(_))
        ));
        // A layout 1 object moved to v3 (what the test-only constructor stands in for) reads.
        let (cipher, mut stored) = format::header::new_object_v3_deterministic(
            &kek,
            &ctx,
            id(1),
            Layout::Multipart,
            (
                treuhand::secret::Dek::from_bytes([0x22; 32]),
                [0x33; 12],
                [0x44; 7],
            ),
            &Metadata::new(),
        )
        .unwrap();
        let plain = data(SEG + 9);
        let mut infos = Vec::new();
        for (number, part) in [(2u32, &plain[..SEG]), (5, &plain[SEG..])] {
            let mut enc = cipher.encryptor(number);
            enc.push(part, &mut stored).unwrap();
            enc.finish(&mut stored).unwrap();
            infos.push(PartInfo {
                part_number: number,
                plaintext_len: part.len() as u64,
            });
        }
        stored.extend(cipher.footer(&infos).unwrap());
        let (reader, _) = format::open_object(&kek, &ctx, &stored).unwrap();
        assert_eq!(reader.format_version(), 3);
        let footer_len = format::footer_len_from_tail(&stored[stored.len() - 4..]).unwrap();
        let layout = reader
            .multipart_layout(&stored[stored.len() - footer_len..], stored.len() as u64)
            .unwrap();
        let (ct, mut dec) = layout.decryptor(0..plain.len() as u64).unwrap();
        let mut out = Vec::new();
        dec.push(&stored[ct.start as usize..ct.end as usize], &mut out)
            .unwrap();
        dec.finish().unwrap();
        assert_eq!(out, plain);
    }

    #[test]
    fn v1_and_v2_objects_still_open_beside_v3_and_report_no_object_id() {
        let plain = data(1000);
        for stored in [
            encrypt(&plain),
            encrypt_with_metadata(&plain, &sample_metadata()),
        ] {
            let cipher = open(&stored);
            assert_eq!(cipher.object_id(), None);
            assert!(cipher.format_version() < 3);
            assert_eq!(decrypt(&stored).unwrap(), plain);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn arbitrary_bytes_never_panic_peek_or_open_as_v3(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut v3 = b"TRHD\x03\x01\x10\x00\x00\x00\x00\x01\x04acme".to_vec();
            v3.extend_from_slice(&bytes);
            for input in [&bytes, &v3] {
                let _ = format::peek_header(input);
                prop_assert!(decrypt_v3(input).is_err());
            }
        }
    }
}
