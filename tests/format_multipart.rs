//! Multipart layout 2 (docs/format.md §7): per-attempt part keys, the footer that names each
//! part's attempt, and keyed part ETags.
// Tests assert with unwrap/expect/panic by design.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use treuhand::crypto::{DekContext, KeyId};
use treuhand::format::{self, Error, Layout, ObjectCipher, PartAttempt, PartInfo};
use treuhand::secret::Kek;

const SEG: usize = 1 << 16;

fn kek() -> Kek {
    Kek::from_bytes([0x11; 32])
}

fn key_id() -> KeyId {
    KeyId::new("acme", 1).unwrap()
}

fn ctx(id: &KeyId) -> DekContext<'_> {
    DekContext {
        key: id,
        bucket: "b",
        object: "k",
    }
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed) ^ ((i >> 9) as u8))
        .collect()
}

fn encrypt_part(cipher: &ObjectCipher, part: u32, attempt: &PartAttempt, plain: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = cipher.part_encryptor(part, attempt).unwrap();
    enc.push(plain, &mut out).unwrap();
    enc.finish(&mut out).unwrap();
    out
}

/// Reads plaintext `range` of a stored object.
fn read(stored: &[u8], range: std::ops::Range<u64>) -> Result<Vec<u8>, Error> {
    let id = key_id();
    let (reader, _) = format::open_object(
        &kek(),
        &ctx(&id),
        &stored[..stored.len().min(format::MAX_HEADER_LEN)],
    )?;
    let footer_len = format::footer_len_from_tail(&stored[stored.len() - 4..])?;
    let layout =
        reader.multipart_layout(&stored[stored.len() - footer_len..], stored.len() as u64)?;
    let (c, mut dec) = layout.decryptor(range)?;
    let mut out = Vec::new();
    dec.push(&stored[c.start as usize..c.end as usize], &mut out)?;
    dec.finish()?;
    Ok(out)
}

/// header ‖ parts ‖ footer with the given (number, attempt, plaintext) parts.
fn assemble(
    cipher: &ObjectCipher,
    header: &[u8],
    parts: &[(u32, PartAttempt, Vec<u8>)],
) -> Vec<u8> {
    let mut stored = header.to_vec();
    let mut infos = Vec::new();
    let mut attempts = Vec::new();
    for (n, a, p) in parts {
        stored.extend(encrypt_part(cipher, *n, a, p));
        infos.push(PartInfo {
            part_number: *n,
            plaintext_len: p.len() as u64,
        });
        attempts.push(*a);
    }
    stored.extend(cipher.footer_with_attempts(&infos, &attempts).unwrap());
    stored
}

#[test]
fn two_attempts_of_one_part_never_share_a_keystream() {
    let id = key_id();
    let (cipher, _) = format::new_object(&kek(), &ctx(&id), Layout::MultipartKeyed).unwrap();
    let (p1, p2) = (data(SEG + 100, 1), data(SEG + 100, 2));
    let c1 = encrypt_part(&cipher, 7, &PartAttempt::random().unwrap(), &p1);
    let c2 = encrypt_part(&cipher, 7, &PartAttempt::random().unwrap(), &p2);
    let xor = |a: &[u8], b: &[u8]| a.iter().zip(b).map(|(x, y)| x ^ y).collect::<Vec<u8>>();
    assert!(xor(&c1[..SEG], &c2[..SEG]) != xor(&p1[..SEG], &p2[..SEG]));
    // Identical bytes under two attempts are two unrelated ciphertexts.
    let a = encrypt_part(&cipher, 7, &PartAttempt::random().unwrap(), &p1);
    assert!(a != c1);
}

#[test]
fn layout_2_round_trips_across_parts_segments_and_empty_parts() {
    let id = key_id();
    let (cipher, header) = format::new_object(&kek(), &ctx(&id), Layout::MultipartKeyed).unwrap();
    let parts = vec![
        (1, PartAttempt::random().unwrap(), data(2 * SEG + 5, 1)),
        (2, PartAttempt::random().unwrap(), Vec::new()),
        (4, PartAttempt::random().unwrap(), data(SEG, 3)),
        (9, PartAttempt::random().unwrap(), data(17, 4)),
    ];
    let stored = assemble(&cipher, &header, &parts);
    let whole: Vec<u8> = parts.iter().flat_map(|(_, _, p)| p.clone()).collect();
    let n = whole.len() as u64;
    assert_eq!(read(&stored, 0..n).unwrap(), whole);
    let seg = SEG as u64;
    for r in [
        0..1,
        seg - 3..seg + 3,
        2 * seg..2 * seg + 10,
        2 * seg + 4..3 * seg + 6,
        n - 20..n,
        n - 1..n,
    ] {
        assert_eq!(
            read(&stored, r.clone()).unwrap(),
            &whole[r.start as usize..r.end as usize],
            "{r:?}"
        );
    }
}

#[test]
fn layout_2_rejects_a_wrong_attempt_a_tampered_footer_and_a_layout_1_footer() {
    let id = key_id();
    let (cipher, header) = format::new_object(&kek(), &ctx(&id), Layout::MultipartKeyed).unwrap();
    let plain = data(1000, 5);
    let staged = PartAttempt::random().unwrap();
    let good = assemble(&cipher, &header, &[(1, staged, plain.clone())]);
    assert_eq!(read(&good, 0..1000).unwrap(), plain);

    // A footer (validly MACed) that names another attempt than the one that encrypted the run.
    let mut wrong = header.clone();
    wrong.extend(encrypt_part(&cipher, 1, &staged, &plain));
    let info = [PartInfo {
        part_number: 1,
        plaintext_len: 1000,
    }];
    wrong.extend(
        cipher
            .footer_with_attempts(&info, &[PartAttempt::random().unwrap()])
            .unwrap(),
    );
    assert!(matches!(
        read(&wrong, 0..1000),
        Err(Error::DecryptionFailed)
    ));

    // A flipped bit in the footer's attempt id breaks the footer MAC.
    let mut flipped = good.clone();
    let footer_len = format::footer_len_from_tail(&good[good.len() - 4..]).unwrap();
    let attempt_at = good.len() - footer_len + 8 + 12;
    flipped[attempt_at] ^= 1;
    assert!(matches!(
        read(&flipped, 0..1000),
        Err(Error::DecryptionFailed)
    ));

    // A layout 1 footer is refused for a layout 2 object, and vice versa at the API.
    assert!(matches!(cipher.footer(&info), Err(Error::Misuse(_))));
    let (old, _) = format::new_object(&kek(), &ctx(&id), Layout::Multipart).unwrap();
    assert!(matches!(
        old.part_encryptor(1, &staged),
        Err(Error::Misuse(_))
    ));
    assert!(matches!(
        old.footer_with_attempts(&info, &[staged]),
        Err(Error::Misuse(_))
    ));
    assert!(old.part_etag_digest().is_none());
    // A mismatched attempt count is a misuse, not a footer.
    assert!(matches!(
        cipher.footer_with_attempts(&info, &[]),
        Err(Error::Misuse(_))
    ));
}

#[test]
fn part_etag_digest_is_equal_for_equal_bytes_and_differs_between_uploads() {
    let id = key_id();
    let (a, _) = format::new_object(&kek(), &ctx(&id), Layout::MultipartKeyed).unwrap();
    let (b, _) = format::new_object(&kek(), &ctx(&id), Layout::MultipartKeyed).unwrap();
    let digest = |c: &ObjectCipher, chunks: &[&[u8]]| {
        let mut d = c.part_etag_digest().unwrap();
        for chunk in chunks {
            d.update(chunk);
        }
        d.finish()
    };
    let body = data(5000, 9);
    // Chunking does not matter; the bytes do.
    assert_eq!(
        digest(&a, &[&body]),
        digest(&a, &[&body[..10], &body[10..]])
    );
    assert_ne!(digest(&a, &[&body]), digest(&a, &[&body[1..]]));
    assert_ne!(digest(&a, &[&body]), digest(&b, &[&body]));
}

#[test]
fn listing_hints_read_both_multipart_layouts() {
    let id = key_id();
    for layout in [Layout::Multipart, Layout::MultipartKeyed] {
        let (cipher, header) = format::new_object(&kek(), &ctx(&id), layout).unwrap();
        assert_eq!(format::layout_hint(&header), Some(layout));
        let info = [
            PartInfo {
                part_number: 1,
                plaintext_len: 10,
            },
            PartInfo {
                part_number: 2,
                plaintext_len: 32,
            },
        ];
        let footer = match layout {
            Layout::Multipart => cipher.footer(&info).unwrap(),
            _ => cipher
                .footer_with_attempts(
                    &info,
                    &[
                        PartAttempt::random().unwrap(),
                        PartAttempt::random().unwrap(),
                    ],
                )
                .unwrap(),
        };
        assert_eq!(format::footer_plaintext_len_hint(&footer), Some(42));
    }
    assert_eq!(format::footer_plaintext_len_hint(b"TRF2\0\0\0\x05"), None);
}

/// Layout 2 under a format v3 header (docs/format.md §8): the same runs and footer, the DEK
/// wrapped under the per-object KEK, read as the proxy reads it (peek the id, derive the KEK).
#[test]
fn layout_2_round_trips_under_a_v3_header() {
    use treuhand::crypto::oprf::{self, ObjectId, ObjectIdentity, OprfKey};
    let id = key_id();
    let object_kek = |object_id: ObjectId| {
        let identity = ObjectIdentity {
            tenant: "acme".into(),
            key_version: 1,
            bucket: "b".into(),
            key: "k".into(),
            id: object_id,
        };
        let tenant_key = OprfKey::from_bytes(&[0x07; 32]).unwrap();
        let secret = tenant_key.evaluate_unsplit(&identity).unwrap();
        oprf::object_kek(&secret, &identity).unwrap()
    };
    let mut metadata = format::Metadata::new();
    metadata.insert("content-type", "application/octet-stream");
    let (cipher, header) = format::new_object_v3(
        &object_kek(ObjectId([0x3c; 32])),
        &ctx(&id),
        ObjectId([0x3c; 32]),
        Layout::MultipartKeyed,
        &metadata,
    )
    .unwrap();
    assert_eq!(header[4], 3);
    let parts = [
        (1, PartAttempt::random().unwrap(), data(SEG + 3, 1)),
        (2, PartAttempt::random().unwrap(), Vec::new()),
        (7, PartAttempt::random().unwrap(), data(100, 2)),
    ];
    let stored = assemble(&cipher, &header, &parts);
    let plain: Vec<u8> = parts.iter().flat_map(|(_, _, p)| p.clone()).collect();

    let peeked = format::peek_header(&stored[..format::HEADER_PROBE_LEN]).unwrap();
    assert_eq!(peeked.object_id, Some(ObjectId([0x3c; 32])));
    let kek = object_kek(peeked.object_id.unwrap());
    let (reader, header_len) = format::open_object(&kek, &ctx(&id), &stored).unwrap();
    assert_eq!(header_len, header.len());
    assert_eq!(reader.metadata(), &metadata);
    let footer_len = format::footer_len_from_tail(&stored[stored.len() - 4..]).unwrap();
    let layout = reader
        .multipart_layout(&stored[stored.len() - footer_len..], stored.len() as u64)
        .unwrap();
    for range in [
        0..plain.len() as u64,
        10..SEG as u64 + 50,
        SEG as u64..SEG as u64 + 3,
    ] {
        let (c, mut dec) = layout.decryptor(range.clone()).unwrap();
        let mut out = Vec::new();
        dec.push(&stored[c.start as usize..c.end as usize], &mut out)
            .unwrap();
        dec.finish().unwrap();
        assert_eq!(out, &plain[range.start as usize..range.end as usize]);
    }
    // The legacy reader's KEK (and another object's) opens nothing.
    assert!(read(&stored, 0..1).is_err());
    assert!(format::open_object(&object_kek(ObjectId([0x3d; 32])), &ctx(&id), &stored).is_err());
}
