//! Fuzz targets of the object format: header and footer-tail parsing, layout and range
//! arithmetic, and segment decryption of whole stored objects.

use std::ops::Range;

use crate::crypto::oprf::{self, ObjectId, ObjectIdentity, OprfKey};
use crate::format::header::{Header, new_object_v3_deterministic};
use crate::format::{self, Layout, Metadata, ObjectCipher, ObjectLayout, PartAttempt, PartInfo};
use crate::secret::{Dek, Kek};

use super::{Input, pattern, vector_context, vector_key, vector_object};

/// The tenant OPRF key of the frozen v3 vectors (tests/vectors.rs, `key-hierarchy-v3.txt`).
const VECTOR_OPRF_KEY: [u8; 32] = [0x07; 32];

/// The per-object KEK of `identity` under the vector OPRF key, derived as the proxy derives
/// it; for the frozen v3 vectors' identity it opens them.
fn vector_object_kek_of(identity: &ObjectIdentity) -> Kek {
    let secret = OprfKey::from_bytes(&VECTOR_OPRF_KEY)
        .and_then(|k| k.evaluate_unsplit(identity))
        .expect("the vector OPRF key evaluates");
    oprf::object_kek(&secret, identity).expect("the vector identity derives a KEK")
}

/// The per-object KEK of the vector object (vector tenant, bucket and key) with object id `id`.
fn vector_object_kek(id: ObjectId) -> Kek {
    let (_, key) = vector_key();
    let context = vector_context(&key);
    vector_object_kek_of(&ObjectIdentity {
        tenant: key.tenant.clone(),
        key_version: key.version,
        bucket: context.bucket.to_owned(),
        key: context.object.to_owned(),
        id,
    })
}

/// The KEK that opens `data` if it is a vector object: the legacy vector KEK for v1 and v2,
/// the per-object KEK of the identity its header states for v3 (what the proxy does: peek,
/// derive, open).
fn vector_kek_for(data: &[u8]) -> Kek {
    let (legacy, key) = vector_key();
    format::peek_header(data)
        .ok()
        .and_then(|info| info.object_identity(&vector_context(&key)))
        .map_or(legacy, |identity| vector_object_kek_of(&identity))
}

/// The vector object in format v3 with object id `id`: same DEK, wrap nonce and nonce prefix
/// as [`vector_object`], so an encryption under it is deterministic.
fn vector_object_v3(id: ObjectId, layout: Layout, metadata: &Metadata) -> (ObjectCipher, Vec<u8>) {
    let (_, key) = vector_key();
    new_object_v3_deterministic(
        &vector_object_kek(id),
        &vector_context(&key),
        id,
        layout,
        (Dek::from_bytes([0x22; 32]), [0x33; 12], [0x44; 7]),
        metadata,
    )
    .expect("the v3 vector object encrypts")
}

/// Header, metadata encoding and footer tail parsers (`format::header`, `format::metadata`,
/// `format::layout::footer_len_from_tail`), `peek_header`, and `open_object` under the vector
/// key (v1, v2) or the per-object vector KEK of the stated object id (v3).
pub fn format_header(data: &[u8]) {
    let hint = format::header_len_hint(data);
    let peeked = format::peek_header(data);
    if let Ok((header, _mac, len)) = Header::parse(data) {
        assert!(len <= data.len(), "parsed header longer than its input");
        assert_eq!(
            hint,
            Some(len),
            "header_len_hint disagrees with Header::parse"
        );
        assert_eq!(header.encoded_len(), len);
        assert!(header.segment_size.is_power_of_two());
        // Whatever parses as a whole header has public fields, and they are the parsed ones.
        let info = peeked
            .as_ref()
            .expect("peek_header refused a header that parses");
        assert_eq!(info.version, header.format_version());
        assert_eq!(info.tenant, header.key.tenant);
        assert_eq!(info.key_version, header.key.version);
        assert_eq!(info.object_id, header.object_id);
    }
    match &peeked {
        Ok(info) => {
            assert!(matches!(info.version, 1..=3));
            assert_eq!(info.object_id.is_some(), info.version == 3);
        }
        // A truncation names more bytes than there are, and no more than the probe.
        Err(format::Error::HeaderTruncated { need }) => {
            assert!(*need > data.len() && *need <= format::HEADER_PROBE_LEN);
        }
        Err(format::Error::NotAnObject) => {}
        Err(other) => panic!("peek_header returned an untyped error: {other:?}"),
    }
    if let Some(at) = data.len().checked_sub(format::FOOTER_TAIL_LEN)
        && let Ok(len) = format::footer_len_from_tail(&data[at..])
    {
        assert!(len >= format::FOOTER_TAIL_LEN);
    }
    if let Ok(metadata) = Metadata::decode(data) {
        // decode accepts only the canonical encoding, so encoding it again gives the input.
        match metadata.encode() {
            Ok(encoded) => assert_eq!(encoded, data, "metadata decoding is not canonical"),
            Err(_) => assert!(data.len() > format::MAX_METADATA),
        }
    }
    let (_, key) = vector_key();
    let kek = vector_kek_for(data);
    if let Ok((cipher, len)) = format::open_object(&kek, &vector_context(&key), data) {
        assert_eq!(cipher.header_len(), len);
        assert!(len <= data.len());
        // What opened under a v3 KEK is a v3 header naming that object id, and only that.
        if let Ok(info) = &peeked {
            assert_eq!(cipher.object_id(), info.object_id);
            assert_eq!(cipher.format_version(), info.version);
        }
    }
}

/// Run and range arithmetic of single and multipart layouts (`format::layout`), with footers
/// authenticated under the vector key (so the fuzzer reaches what follows the footer MAC), and
/// for small objects a real encryption checked against range decryption.
pub fn format_layout(data: &[u8]) {
    let mut input = Input(data);
    let flags = input.byte();
    let multipart = flags & 1 != 0;
    let layout = if multipart {
        Layout::Multipart
    } else {
        Layout::Single
    };
    let (cipher, header) = vector_object(layout, &Metadata::new());
    let header_len = header.len() as u64;
    let segment = u64::from(cipher.header().segment_size);
    // Checked, unlike a mistake in the library: the target itself must not overflow.
    let run_len = |plaintext: u64| {
        plaintext
            .checked_div(segment)?
            .checked_add(1)?
            .checked_mul(16)?
            .checked_add(plaintext)
    };
    let mut parts = Vec::new();
    let mut footer = Vec::new();
    let total = if multipart {
        for _ in 0..input.byte() % 9 {
            let part_number = if flags & 2 != 0 {
                input.u32()
            } else {
                u32::from(input.byte())
            };
            let plaintext_len = if flags & 4 != 0 {
                input.u64()
            } else {
                u64::from(input.u16()) * u64::from(input.byte() % 4 + 1)
            };
            parts.push(PartInfo {
                part_number,
                plaintext_len,
            });
        }
        let Ok(encoded) = cipher.footer(&parts) else {
            return;
        };
        footer = encoded;
        let exact = parts.iter().try_fold(header_len, |acc, part| {
            acc.checked_add(run_len(part.plaintext_len)?)
        });
        match exact.and_then(|t| t.checked_add(footer.len() as u64)) {
            Some(t) if flags & 8 == 0 => t,
            _ => input.u64(),
        }
    } else if flags & 2 != 0 {
        input.u64()
    } else {
        header_len + u64::from(input.u32() % (1 << 20))
    };
    let object_layout = if multipart {
        cipher.multipart_layout(&footer, total)
    } else {
        cipher.single_layout(total)
    };
    let Ok(object_layout) = object_layout else {
        return;
    };
    let plaintext_len = object_layout.plaintext_len();
    // A layout that was accepted describes exactly `total` bytes.
    if !multipart {
        assert_eq!(
            run_len(plaintext_len).and_then(|r| r.checked_add(header_len)),
            Some(total),
            "single layout accepted a length no object has"
        );
    }
    // Encrypt for real when small, so the ranges below can be decrypted and compared.
    let real = (total <= 1 << 20).then(|| {
        let plaintext = pattern(plaintext_len as usize);
        let mut object = header.clone();
        if multipart {
            let mut at = 0usize;
            for part in &parts {
                let end = at + part.plaintext_len as usize;
                let mut encryptor = cipher.encryptor(part.part_number);
                encryptor
                    .push(&plaintext[at..end], &mut object)
                    .expect("small runs encrypt");
                encryptor.finish(&mut object).expect("small runs encrypt");
                at = end;
            }
            object.extend_from_slice(&footer);
        } else {
            let mut encryptor = cipher.encryptor(0);
            encryptor
                .push(&plaintext, &mut object)
                .expect("small runs encrypt");
            encryptor.finish(&mut object).expect("small runs encrypt");
        }
        assert_eq!(object.len() as u64, total, "layout and encryptor disagree");
        (plaintext, object)
    });
    for _ in 0..4 {
        let (mut start, mut end) = (input.u64(), input.u64());
        if flags & 16 == 0 {
            // Mostly ranges inside the object, where the arithmetic is interesting.
            start %= plaintext_len + 1;
            end %= plaintext_len + 1;
        }
        check_range(
            &object_layout,
            start..end,
            header_len..total,
            real.as_ref().map(|(p, o)| (p.as_slice(), o.as_slice())),
        );
    }
}

/// A plaintext range maps to a ciphertext range inside the body, and, given the real object,
/// decrypts to exactly the plaintext of that range.
pub(super) fn check_range(
    layout: &ObjectLayout<'_>,
    range: Range<u64>,
    body: Range<u64>,
    real: Option<(&[u8], &[u8])>,
) {
    let valid = range.start <= range.end && range.end <= layout.plaintext_len();
    let Ok((ciphertext, mut decryptor)) = layout.decryptor(range.clone()) else {
        assert!(!valid, "a valid range {range:?} was refused");
        return;
    };
    assert!(valid, "an invalid range {range:?} was accepted");
    assert!(ciphertext.start <= ciphertext.end);
    if ciphertext.start < ciphertext.end {
        assert!(
            body.start <= ciphertext.start && ciphertext.end <= body.end,
            "ciphertext range {ciphertext:?} outside the body {body:?}"
        );
    }
    if let Some((plaintext, object)) = real {
        let mut out = Vec::new();
        decryptor
            .push(
                &object[ciphertext.start as usize..ciphertext.end as usize],
                &mut out,
            )
            .expect("a genuine object decrypts");
        decryptor.finish().expect("a genuine object decrypts");
        assert_eq!(
            out,
            &plaintext[range.start as usize..range.end as usize],
            "range decryption returned other bytes"
        );
    }
}

/// The segment decryptor over a whole stored object under the vector key: opening the header,
/// the layout (single or multipart footer), then decryption through both the buffered `push`
/// path and the zero-copy `open_in_place` path, which must agree. A decryption that succeeds
/// must have been given exactly the canonical encryption of what it returned: no altered input
/// ever yields plaintext.
pub fn segment_decrypt(data: &[u8]) {
    let (_, key) = vector_key();
    let context = vector_context(&key);
    let prefix = &data[..data.len().min(format::MAX_HEADER_LEN)];
    let kek = vector_kek_for(prefix);
    let Ok((cipher, _header_len)) = format::open_object(&kek, &context, prefix) else {
        return;
    };
    let total = data.len() as u64;
    let mut footer = None;
    let layout = match cipher.header().layout {
        Layout::Single => cipher.single_layout(total),
        Layout::Multipart | Layout::MultipartKeyed => {
            let Some(at) = data.len().checked_sub(format::FOOTER_TAIL_LEN) else {
                return;
            };
            let Ok(footer_len) = format::footer_len_from_tail(&data[at..]) else {
                return;
            };
            let Some(start) = data.len().checked_sub(footer_len) else {
                return;
            };
            footer = Some(&data[start..]);
            cipher.multipart_layout(&data[start..], total)
        }
    };
    let Ok(layout) = layout else {
        return;
    };
    let plaintext_len = layout.plaintext_len();
    let pieces = [usize::MAX, 1009, 65_552][data.len() % 3];
    let full = decrypt_pushing(&layout, 0..plaintext_len, data, pieces);
    let in_place = decrypt_in_place(&layout, 0..plaintext_len, data);
    assert_eq!(
        full.is_some(),
        in_place.is_some(),
        "push and open_in_place disagree"
    );
    let Some(plaintext) = full else {
        return;
    };
    assert_eq!(Some(&plaintext), in_place.as_ref());
    assert_eq!(plaintext.len() as u64, plaintext_len);
    // Only the exact encryption of this plaintext under the vector key decrypts.
    let layout_kind = cipher.header().layout;
    let (again, mut expected) = match cipher.object_id() {
        Some(id) => vector_object_v3(id, layout_kind, cipher.metadata()),
        None => vector_object(layout_kind, cipher.metadata()),
    };
    let keyed = layout_kind == Layout::MultipartKeyed;
    match footer {
        None => {
            let mut encryptor = again.encryptor(0);
            encryptor
                .push(&plaintext, &mut expected)
                .expect("re-encryption");
            encryptor.finish(&mut expected).expect("re-encryption");
        }
        Some(footer) => {
            // The footer authenticated, so its part list is the writer's. Layout 2 entries
            // also name the attempt whose key encrypted the part (docs/format.md §7.2).
            let count = u32::from_be_bytes([footer[4], footer[5], footer[6], footer[7]]) as usize;
            let entry_len = if keyed { 28 } else { 12 };
            let mut at = 0usize;
            let mut parts = Vec::new();
            let mut attempts = Vec::new();
            for entry in footer[8..8 + entry_len * count].chunks_exact(entry_len) {
                let part_number = u32::from_be_bytes([entry[0], entry[1], entry[2], entry[3]]);
                let mut len = [0u8; 8];
                len.copy_from_slice(&entry[4..12]);
                let plaintext_len = u64::from_be_bytes(len);
                let end = at + plaintext_len as usize;
                let mut encryptor = if keyed {
                    let mut attempt = [0u8; 16];
                    attempt.copy_from_slice(&entry[12..28]);
                    attempts.push(PartAttempt(attempt));
                    again
                        .part_encryptor(part_number, &PartAttempt(attempt))
                        .expect("a layout 2 object has part keys")
                } else {
                    again.encryptor(part_number)
                };
                encryptor
                    .push(&plaintext[at..end], &mut expected)
                    .expect("re-encryption");
                encryptor.finish(&mut expected).expect("re-encryption");
                parts.push(PartInfo {
                    part_number,
                    plaintext_len,
                });
                at = end;
            }
            let footer = if keyed {
                again.footer_with_attempts(&parts, &attempts)
            } else {
                again.footer(&parts)
            };
            expected.extend(footer.expect("re-encoding the footer"));
        }
    }
    assert!(
        expected == data,
        "decryption succeeded on bytes that are not the canonical encryption"
    );
    // A range inside a genuine object decrypts to the same bytes.
    let range = plaintext_len / 3..plaintext_len - plaintext_len / 5;
    let part = decrypt_pushing(&layout, range.clone(), data, pieces).expect("range of a genuine");
    assert_eq!(part, &plaintext[range.start as usize..range.end as usize]);
}

fn decrypt_pushing(
    layout: &ObjectLayout<'_>,
    range: Range<u64>,
    data: &[u8],
    pieces: usize,
) -> Option<Vec<u8>> {
    let (ciphertext, mut decryptor) = layout.decryptor(range).ok()?;
    let slice = data.get(ciphertext.start as usize..ciphertext.end as usize)?;
    let mut out = Vec::new();
    for piece in slice.chunks(pieces.max(1)) {
        // On an error `out` may hold the plaintext of the earlier segments of this piece, whose
        // tags verified (push's contract); the caller discards it.
        if decryptor.push(piece, &mut out).is_err() {
            return None;
        }
    }
    decryptor.finish().ok()?;
    Some(out)
}

fn decrypt_in_place(layout: &ObjectLayout<'_>, range: Range<u64>, data: &[u8]) -> Option<Vec<u8>> {
    let (ciphertext, mut decryptor) = layout.decryptor(range).ok()?;
    let mut rest = data.get(ciphertext.start as usize..ciphertext.end as usize)?;
    let mut out = Vec::new();
    while let Some(len) = decryptor.next_segment_len() {
        let (segment, tail) = rest.split_at_checked(len)?;
        let mut segment = segment.to_vec();
        let emit = decryptor.open_in_place(&mut segment).ok()?;
        out.extend_from_slice(segment.get(emit)?);
        rest = tail;
    }
    if !rest.is_empty() {
        return None;
    }
    decryptor.finish().ok()?;
    Some(out)
}
