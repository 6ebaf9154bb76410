//! Round trips, range reads and every tamper class of the object format v1.
// Tests assert with unwrap/expect/panic by design.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ops::Range;

use proptest::prelude::*;
use treuhand::crypto::{DekContext, KeyId};
use treuhand::format::{self, Layout, MAX_HEADER_LEN, PartInfo};
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
    let mut positions: Vec<usize> = (0..MAX_HEADER_LEN.min(stored.len())).collect();
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
    let id = key();
    let ctx = DekContext {
        key: &id,
        bucket: "bucket",
        object: "object",
    };
    let (cipher, _) = format::open_object(&kek(), &ctx, &stored).unwrap();
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
    let id = key();
    let ctx = DekContext {
        key: &id,
        bucket: "bucket",
        object: "object",
    };
    let (cipher, _) = format::open_object(&kek(), &ctx, &stored).unwrap();
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
