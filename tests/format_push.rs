//! The streaming `push` API fed in uneven pieces: the bytes it writes are those of one whole
//! push, of the in-place calls and of the frozen vectors; its output never holds plaintext of an
//! unsealed segment (encrypt) or of an unauthenticated one (decrypt), also when a segment is
//! split across pushes.
// Tests assert with unwrap/expect/panic by design.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use treuhand::crypto::{DekContext, KeyId};
use treuhand::format::header::new_object_deterministic;
use treuhand::format::{self, Layout, ObjectCipher};
use treuhand::secret::{Dek, Kek};

const SEG: usize = 65536;
const TAG: usize = 16;
const STRIDE: usize = SEG + TAG;

/// Piece lengths that split segments at the start, in the middle, one byte short and one byte
/// over, and that also span several segments at once.
const PIECES: [usize; 9] = [1, 7, SEG - 8, 2, SEG + 1, 3 * SEG + 5, 1000, SEG - 1, 4096];

/// Splits `bytes` into pieces of the lengths in `pattern`, repeated.
fn uneven<'a>(bytes: &'a [u8], pattern: &[usize]) -> Vec<&'a [u8]> {
    let mut pieces = Vec::new();
    let mut rest = bytes;
    for &len in pattern.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (piece, tail) = rest.split_at(len.min(rest.len()));
        pieces.push(piece);
        rest = tail;
    }
    pieces
}

/// The frozen vectors' key, context and randomness (tests/vectors.rs).
fn vector_object() -> (Kek, KeyId) {
    (
        Kek::from_bytes([0x11; 32]),
        KeyId::new("vector-tenant", 7).unwrap(),
    )
}

fn vector_context(id: &KeyId) -> DekContext<'_> {
    DekContext {
        key: id,
        bucket: "vectors",
        object: "dir/object.bin",
    }
}

fn new_vector_object(kek: &Kek, ctx: &DekContext<'_>) -> (ObjectCipher, Vec<u8>) {
    new_object_deterministic(
        kek,
        ctx,
        Layout::Single,
        Dek::from_bytes([0x22; 32]),
        [0x33; 12],
        [0x44; 7],
    )
    .unwrap()
}

fn data(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 8)) as u8)
        .collect()
}

/// The object written through the in-place calls: header, then every segment ‖ tag.
fn in_place_object(cipher: &ObjectCipher, header: &[u8], plain: &[u8]) -> Vec<u8> {
    let mut stored = header.to_vec();
    let mut enc = cipher.encryptor(0);
    let whole = plain.len() / SEG * SEG;
    for segment in plain[..whole].chunks(SEG) {
        let mut segment = segment.to_vec();
        let tag = enc.seal_segment_in_place(&mut segment).unwrap();
        stored.extend_from_slice(&segment);
        stored.extend_from_slice(&tag);
    }
    let mut last = plain[whole..].to_vec();
    let (tag, len) = enc.finish_in_place(&mut last).unwrap();
    assert_eq!(len, plain.len() as u64);
    stored.extend_from_slice(&last);
    stored.extend_from_slice(&tag);
    stored
}

#[test]
fn push_in_uneven_pieces_writes_the_frozen_vectors_byte_for_byte() {
    let (kek, id) = vector_object();
    let ctx = vector_context(&id);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    for (name, len) in [
        ("object-v1-1byte.bin", 1),
        ("object-v1-one-segment.bin", SEG),
        ("object-v1-two-segments.bin", SEG + 1),
    ] {
        let expected = std::fs::read(dir.join(name)).unwrap();
        let plain: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        for pattern in [&[1][..], &[7], &[SEG - 1], &[SEG + 1], &[SEG, 1], &PIECES] {
            let (cipher, mut out) = new_vector_object(&kek, &ctx);
            let mut enc = cipher.encryptor(0);
            for piece in uneven(&plain, pattern) {
                enc.push(piece, &mut out).unwrap();
            }
            assert_eq!(enc.finish(&mut out).unwrap(), len as u64);
            assert!(
                out == expected,
                "{name} pushed in pieces {pattern:?} differs"
            );
        }
    }
}

#[test]
fn push_in_uneven_pieces_matches_the_in_place_path_and_holds_only_sealed_segments() {
    let (kek, id) = vector_object();
    let ctx = vector_context(&id);
    let plain = data(5 * SEG + 123);
    let (cipher, header) = new_vector_object(&kek, &ctx);
    let expected = in_place_object(&cipher, &header, &plain);
    for pattern in [&PIECES[..], &[SEG / 3], &[SEG * 2 + 3, 5]] {
        let mut out = header.clone();
        let mut enc = cipher.encryptor(0);
        let mut pushed = 0;
        for piece in uneven(&plain, pattern) {
            enc.push(piece, &mut out).unwrap();
            pushed += piece.len();
            // Exactly the segments completed so far, sealed: no plaintext of the segment still
            // being filled, and nothing out of place.
            let sealed = header.len() + pushed / SEG * STRIDE;
            assert_eq!(
                out.len(),
                sealed,
                "after {pushed} bytes in pieces {pattern:?}"
            );
            assert!(out[..] == expected[..sealed]);
        }
        enc.finish(&mut out).unwrap();
        assert!(out == expected, "pieces {pattern:?}");
    }
}

/// Decrypts `range` of `stored` (made by `new_vector_object`), feeding the ciphertext in pieces
/// of `pattern`; `each` sees the ciphertext bytes fed so far and the output after every push.
fn decrypt_in_pieces(
    stored: &[u8],
    range: std::ops::Range<u64>,
    pattern: &[usize],
    mut each: impl FnMut(usize, &[u8]),
) -> Result<Vec<u8>, format::Error> {
    let (kek, id) = vector_object();
    let ctx = vector_context(&id);
    let (cipher, _) = format::open_object(&kek, &ctx, stored).unwrap();
    let layout = cipher.single_layout(stored.len() as u64).unwrap();
    let (ct, mut dec) = layout.decryptor(range).unwrap();
    let mut out = Vec::new();
    let mut fed = 0;
    for piece in uneven(&stored[ct.start as usize..ct.end as usize], pattern) {
        let pushed = dec.push(piece, &mut out);
        fed += piece.len();
        each(fed, &out);
        if let Err(e) = pushed {
            // A failed decryptor refuses everything after, and does not finish.
            assert!(matches!(
                dec.push(&[0], &mut out),
                Err(format::Error::DecryptionFailed)
            ));
            assert!(dec.finish().is_err());
            return Err(e);
        }
    }
    dec.finish()?;
    Ok(out)
}

#[test]
fn decrypt_push_in_uneven_pieces_emits_whole_authenticated_segments_only() {
    let (kek, id) = vector_object();
    let ctx = vector_context(&id);
    let plain = data(5 * SEG + 123);
    let (cipher, header) = new_vector_object(&kek, &ctx);
    let stored = in_place_object(&cipher, &header, &plain);
    for pattern in [&PIECES[..], &[1], &[STRIDE - 1], &[STRIDE + 1]] {
        let got = decrypt_in_pieces(&stored, 0..plain.len() as u64, pattern, |fed, out| {
            // Each segment's plaintext appears once its tag has arrived, not before.
            let opened = if fed == stored.len() - header.len() {
                plain.len()
            } else {
                fed / STRIDE * SEG
            };
            assert_eq!(out, &plain[..opened], "after {fed} bytes in {pattern:?}");
        })
        .unwrap();
        assert_eq!(got, plain);
        // A range starting and ending inside segments, fed the same way.
        let range = 1000..(4 * SEG + 17) as u64;
        let got = decrypt_in_pieces(&stored, range.clone(), pattern, |_, _| {}).unwrap();
        assert_eq!(got, &plain[range.start as usize..range.end as usize]);
    }
}

#[test]
fn a_tampered_segment_split_across_pushes_fails_and_emits_none_of_it() {
    let (kek, id) = vector_object();
    let ctx = vector_context(&id);
    let plain = data(3 * SEG);
    let (cipher, header) = new_vector_object(&kek, &ctx);
    let stored = in_place_object(&cipher, &header, &plain);
    let segment_1 = header.len() + STRIDE;
    // A flipped bit at the start of segment 1 (buffered before it completes), at its end (the
    // piece that completes it) and in its tag; the pieces split segment 1 in two.
    for offset in [0, SEG - 1, SEG + 3] {
        let mut bad = stored.clone();
        bad[segment_1 + offset] ^= 0x01;
        for pattern in [&[STRIDE + 100][..], &PIECES, &[1000]] {
            let result = decrypt_in_pieces(&bad, 0..plain.len() as u64, pattern, |_, out| {
                // Segment 0 authenticated and may be out; nothing of segment 1 or later.
                assert!(out.is_empty() || out == &plain[..SEG], "offset {offset}");
            });
            assert!(
                matches!(result, Err(format::Error::DecryptionFailed)),
                "offset {offset}, pieces {pattern:?}"
            );
        }
    }
}
