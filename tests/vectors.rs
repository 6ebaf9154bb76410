//! Frozen test vectors: they pin the key hierarchies (legacy TMK, and the per-object OPRF chain
//! of format v3) and the object formats v1, v2 and v3 byte for byte.
//!
//! Every input below is fixed (no randomness), so the outputs are deterministic. The files in
//! `tests/data/` were written once with
//!
//! ```text
//! TREUHAND_WRITE_VECTORS=1 cargo test --test vectors
//! ```
//!
//! (the v2 files later, with `TREUHAND_WRITE_VECTORS=1 cargo test --test vectors
//! object_format_v2`, which writes only those; the multipart layout 2 files with
//! `TREUHAND_WRITE_VECTORS=1 cargo test --test vectors multipart_layout_2_vectors`; the v3 files
//! with `TREUHAND_WRITE_VECTORS=1 cargo test --test vectors v3_`) and are
//! checked on every run. A change that alters any of them changes the wire format and
//! needs a format version bump (docs/format.md), not a regenerated vector.
// Tests assert with unwrap/expect/panic by design.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use treuhand::crypto::envelope::{commit, derive_kek, wrap_dek_with_nonce};
use treuhand::crypto::{DekContext, KeyId, ShareEnvelope};
use treuhand::format::header::{new_object_deterministic, new_object_deterministic_with_metadata};
use treuhand::format::{self, Layout, Metadata, PartAttempt, PartInfo};
use treuhand::secret::{Dek, Kek, Share, ShareValue, Tmk};

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Compares `actual` with the frozen file, or writes it when regenerating.
fn check(name: &str, actual: &[u8]) {
    let path = data_dir().join(name);
    if std::env::var_os("TREUHAND_WRITE_VECTORS").is_some() {
        std::fs::create_dir_all(data_dir()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected =
        std::fs::read(&path).unwrap_or_else(|e| panic!("missing vector {}: {e}", path.display()));
    assert!(
        expected == actual,
        "vector {name} changed: the format changed without a version bump"
    );
}

fn fixed_object(len: usize, layout_multipart: bool) -> Vec<u8> {
    fixed_object_with(len, layout_multipart, None)
}

/// The first `len` plaintext bytes of the stored object `out`, decrypted through `layout`.
fn read_back(layout: &format::ObjectLayout<'_>, out: &[u8], len: usize) -> Vec<u8> {
    let (range, mut dec) = layout.decryptor(0..len as u64).unwrap();
    let mut back = Vec::new();
    dec.push(&out[range.start as usize..range.end as usize], &mut back)
        .unwrap();
    dec.finish().unwrap();
    back
}

/// The vectors' KEK and key id.
fn vector_keys() -> (Kek, KeyId) {
    let id = KeyId::new("vector-tenant", 7).unwrap();
    (Kek::from_bytes([0x11; 32]), id)
}

/// The vectors' object: `vectors/dir/object.bin` under `id`.
fn vector_context(id: &KeyId) -> DekContext<'_> {
    DekContext {
        key: id,
        bucket: "vectors",
        object: "dir/object.bin",
    }
}

/// The fixed object, written as v2 with `metadata` when given (through the v2 entry point even
/// for v1, so the v1 vectors also pin that an empty metadata set still writes v1).
fn fixed_object_with(len: usize, layout_multipart: bool, metadata: Option<&Metadata>) -> Vec<u8> {
    let (kek, id) = vector_keys();
    let ctx = vector_context(&id);
    let layout = if layout_multipart {
        Layout::Multipart
    } else {
        Layout::Single
    };
    let randomness = (Dek::from_bytes([0x22; 32]), [0x33; 12], [0x44; 7]);
    let (cipher, mut out) = match metadata {
        None => {
            let (dek, wrap, prefix) = randomness;
            new_object_deterministic(&kek, &ctx, layout, dek, wrap, prefix).unwrap()
        }
        Some(m) => {
            new_object_deterministic_with_metadata(&kek, &ctx, layout, randomness, m).unwrap()
        }
    };
    let plain = plaintext(len);
    if layout_multipart {
        let (a, b) = plain.split_at(len / 2);
        let mut infos = Vec::new();
        for (number, part) in [(1u32, a), (3u32, b)] {
            let mut enc = cipher.encryptor(number);
            enc.push(part, &mut out).unwrap();
            enc.finish(&mut out).unwrap();
            infos.push(PartInfo {
                part_number: number,
                plaintext_len: part.len() as u64,
            });
        }
        out.extend(cipher.footer(&infos).unwrap());
    } else {
        let mut enc = cipher.encryptor(0);
        enc.push(&plain, &mut out).unwrap();
        enc.finish(&mut out).unwrap();
    }
    // Every vector must also read back.
    let (reader, _) =
        format::open_object(&kek, &ctx, &out[..out.len().min(format::MAX_HEADER_LEN)]).unwrap();
    let layout = if layout_multipart {
        let footer_len = format::footer_len_from_tail(&out[out.len() - 4..]).unwrap();
        reader
            .multipart_layout(&out[out.len() - footer_len..], out.len() as u64)
            .unwrap()
    } else {
        reader.single_layout(out.len() as u64).unwrap()
    };
    assert_eq!(read_back(&layout, &out, len), plain);
    assert_eq!(reader.metadata(), metadata.unwrap_or(&Metadata::new()));
    out
}

/// The fixed multipart layout 2 object (docs/format.md §7): parts 1 and 3 with fixed attempt
/// ids, optionally with metadata (v2 header). Reads back through the reader before it is
/// returned.
fn fixed_mp2_object(len: usize, metadata: Option<&Metadata>) -> Vec<u8> {
    let (kek, id) = vector_keys();
    let ctx = vector_context(&id);
    let randomness = (Dek::from_bytes([0x22; 32]), [0x33; 12], [0x44; 7]);
    let empty = Metadata::new();
    let (cipher, mut out) = new_object_deterministic_with_metadata(
        &kek,
        &ctx,
        Layout::MultipartKeyed,
        randomness,
        metadata.unwrap_or(&empty),
    )
    .unwrap();
    let plain = plaintext(len);
    let (a, b) = plain.split_at(len / 2);
    let mut infos = Vec::new();
    let mut attempts = Vec::new();
    for (number, attempt, part) in [(1u32, [0x77; 16], a), (3u32, [0x88; 16], b)] {
        let attempt = PartAttempt(attempt);
        let mut enc = cipher.part_encryptor(number, &attempt).unwrap();
        enc.push(part, &mut out).unwrap();
        enc.finish(&mut out).unwrap();
        infos.push(PartInfo {
            part_number: number,
            plaintext_len: part.len() as u64,
        });
        attempts.push(attempt);
    }
    out.extend(cipher.footer_with_attempts(&infos, &attempts).unwrap());
    let (reader, _) =
        format::open_object(&kek, &ctx, &out[..out.len().min(format::MAX_HEADER_LEN)]).unwrap();
    let footer_len = format::footer_len_from_tail(&out[out.len() - 4..]).unwrap();
    let layout = reader
        .multipart_layout(&out[out.len() - footer_len..], out.len() as u64)
        .unwrap();
    assert_eq!(read_back(&layout, &out, len), plain);
    out
}

#[test]
fn multipart_layout_2_vectors_are_frozen() {
    check("object-mp2-multipart.bin", &fixed_mp2_object(70000, None));
    check(
        "object-mp2-multipart-metadata.bin",
        &fixed_mp2_object(70000, Some(&fixed_metadata())),
    );
    // An empty part among others: its run is one empty final segment under its own key.
    check("object-mp2-empty-part.bin", &fixed_mp2_object(1, None));
}

/// Reads the frozen layout 2 vector by docs/format.md §7 alone (ring directly): layout byte,
/// footer magic, entries with attempt ids, the footer MAC label, and part 1's first segment
/// under K_part(1, A) with the nonce `(N XOR 1) ‖ 0 ‖ 0`.
#[test]
fn multipart_layout_2_vector_matches_the_spec_by_hand() {
    use ring::{aead, hkdf, hmac};
    let bytes = std::fs::read(data_dir().join("object-mp2-multipart.bin")).unwrap();
    let t = usize::from(bytes[12]);
    assert_eq!(&bytes[..5], b"TRHD\x01");
    assert_eq!(bytes[7], 2, "layout 2");
    let header_len = 112 + t;
    struct Len;
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            32
        }
    }
    let derive = |info: &[&[u8]]| {
        let mut out = [0u8; 32];
        hkdf::Salt::new(hkdf::HKDF_SHA256, &[])
            .extract(&[0x22; 32])
            .expand(info, Len)
            .unwrap()
            .fill(&mut out)
            .unwrap();
        out
    };
    let k_mac = hmac::Key::new(hmac::HMAC_SHA256, &derive(&[b"treuhand v1 header mac key"]));
    let header_mac_input = [b"treuhand v1 header".as_slice(), &bytes[..80 + t]].concat();
    hmac::verify(&k_mac, &header_mac_input, &bytes[80 + t..header_len]).unwrap();
    // Footer: "TRF2", 2 entries of 28 bytes, MAC, length.
    let footer_len = u32::from_be_bytes(bytes[bytes.len() - 4..].try_into().unwrap()) as usize;
    assert_eq!(footer_len, 8 + 2 * 28 + 32 + 4);
    let footer = &bytes[bytes.len() - footer_len..];
    assert_eq!(&footer[..8], b"TRF2\0\0\0\x02");
    assert_eq!(&footer[8..12], &1u32.to_be_bytes());
    assert_eq!(&footer[12..20], &35000u64.to_be_bytes());
    assert_eq!(&footer[20..36], &[0x77; 16]);
    assert_eq!(&footer[36..40], &3u32.to_be_bytes());
    assert_eq!(&footer[48..64], &[0x88; 16]);
    let mac_input = [
        b"treuhand mp2 footer".as_slice(),
        &footer[..64],
        &(footer_len as u32).to_be_bytes(),
    ]
    .concat();
    hmac::verify(&k_mac, &mac_input, &footer[64..96]).unwrap();
    // Part 1, segment 0 (final: 35000 < 64 KiB), under K_part(1, 0x77…).
    let k_part = derive(&[b"treuhand mp2 part key", &1u32.to_be_bytes(), &[0x77; 16]]);
    let key = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_256_GCM, &k_part).unwrap());
    let mut nonce = [0u8; 12];
    nonce[..7].copy_from_slice(&[0x44; 7]);
    nonce[6] ^= 1;
    nonce[11] = 1;
    let mut segment = bytes[header_len..header_len + 35000 + 16].to_vec();
    let plain = key
        .open_in_place(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::empty(),
            &mut segment,
        )
        .unwrap();
    assert_eq!(plain, &plaintext(70000)[..35000]);
}

fn fixed_metadata() -> Metadata {
    let mut m = Metadata::new();
    m.insert("content-type", "application/json");
    m.insert("cache-control", "no-cache");
    m.insert("x-amz-meta-mtime", "1700000000.5");
    m
}

#[test]
fn object_format_v1_vectors_are_frozen() {
    check("object-v1-empty.bin", &fixed_object(0, false));
    check("object-v1-1byte.bin", &fixed_object(1, false));
    check("object-v1-one-segment.bin", &fixed_object(65536, false));
    check("object-v1-two-segments.bin", &fixed_object(65537, false));
    check("object-v1-multipart.bin", &fixed_object(70000, true));
}

#[test]
fn object_format_v1_vectors_come_from_empty_metadata_too() {
    let empty = Metadata::new();
    assert_eq!(
        fixed_object_with(1, false, Some(&empty)),
        fixed_object(1, false)
    );
}

#[test]
fn object_format_v2_vectors_are_frozen() {
    let m = fixed_metadata();
    for (file, len, multipart) in [
        ("object-v2-empty.bin", 0, false),
        ("object-v2-1byte.bin", 1, false),
        ("object-v2-two-segments.bin", 65537, false),
        ("object-v2-multipart.bin", 70000, true),
    ] {
        check(file, &fixed_object_with(len, multipart, Some(&m)));
    }
}

#[test]
fn key_hierarchy_vectors_are_frozen() {
    let tmk = Tmk::from_bytes([0x55; 32]);
    let id = KeyId::new("vector-tenant", 7).unwrap();
    let kek = derive_kek(&tmk, &id).unwrap();
    let commitment = commit(&tmk, &id).unwrap();
    let ctx = DekContext {
        key: &id,
        bucket: "vectors",
        object: "dir/object.bin",
    };
    let wrapped =
        wrap_dek_with_nonce(&kek, &Dek::from_bytes([0x22; 32]), &ctx, [0x33; 12]).unwrap();
    let envelope = ShareEnvelope {
        key: id.clone(),
        share: Share::new(2, ShareValue::from_bytes([0x66; 32])),
    };
    let text = format!(
        "kek {}\ncommitment {}\nwrapped_dek {}\nshare_envelope {}\n",
        hex::encode(kek.expose_secret()),
        hex::encode(commitment.0),
        hex::encode(wrapped),
        envelope.encode().as_str(),
    );
    check("key-hierarchy-v1.txt", text.as_bytes());
    // The frozen envelope must parse back to the same share.
    let parsed = ShareEnvelope::parse(envelope.encode().as_str()).unwrap();
    assert_eq!(parsed.share.x(), 2);
}

/// Reads the frozen v2 vector by the offsets of docs/format.md §6 alone (ring directly, none of
/// the format code): version byte, M, header length, K_meta, the all-zero nonce, the AAD and
/// the canonical encoding. If this and the implementation ever disagree, the doc is wrong or
/// the code is.
#[test]
fn object_format_v2_vector_matches_the_spec_by_hand() {
    use ring::{aead, hkdf, hmac};
    let bytes = std::fs::read(data_dir().join("object-v2-1byte.bin")).unwrap();
    let t = usize::from(bytes[12]);
    assert_eq!(&bytes[..5], b"TRHD\x02");
    assert_eq!(&bytes[13..13 + t], b"vector-tenant");
    let m = u32::from_be_bytes(bytes[80 + t..84 + t].try_into().unwrap()) as usize;
    let header_len = 112 + t + 4 + m;
    // A 1-byte single run: one final segment of 1 + 16 bytes after the header.
    assert_eq!(bytes.len(), header_len + 17);
    struct Len;
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            32
        }
    }
    let derive = |info: &[u8]| {
        let mut out = [0u8; 32];
        hkdf::Salt::new(hkdf::HKDF_SHA256, &[])
            .extract(&[0x22; 32])
            .expand(&[info], Len)
            .unwrap()
            .fill(&mut out)
            .unwrap();
        out
    };
    let k_mac = hmac::Key::new(hmac::HMAC_SHA256, &derive(b"treuhand v1 header mac key"));
    let mac_input = [b"treuhand v2 header".as_slice(), &bytes[..84 + t + m]].concat();
    hmac::verify(&k_mac, &mac_input, &bytes[84 + t + m..header_len]).unwrap();
    let k_meta = aead::LessSafeKey::new(
        aead::UnboundKey::new(&aead::AES_256_GCM, &derive(b"treuhand v2 metadata key")).unwrap(),
    );
    let mut block = bytes[84 + t..84 + t + m].to_vec();
    let plain = k_meta
        .open_in_place(
            aead::Nonce::assume_unique_for_key([0; 12]),
            aead::Aad::from(b"treuhand v2 metadata"),
            &mut block,
        )
        .unwrap();
    let mut expected = vec![0, 3];
    for (name, value) in [
        ("cache-control", "no-cache"),
        ("content-type", "application/json"),
        ("x-amz-meta-mtime", "1700000000.5"),
    ] {
        expected.extend_from_slice(&(name.len() as u16).to_be_bytes());
        expected.extend_from_slice(name.as_bytes());
        expected.extend_from_slice(&(value.len() as u16).to_be_bytes());
        expected.extend_from_slice(value.as_bytes());
    }
    assert_eq!(plain, expected.as_slice());
}

// ---------------------------------------------------------------------------------------------
// Format v3 (docs/format.md §8): the per-object key chain and whole v3 objects.
// ---------------------------------------------------------------------------------------------

mod v3 {
    use super::*;
    use curve25519_dalek::ristretto::RistrettoPoint;
    use curve25519_dalek::scalar::Scalar;
    use treuhand::crypto::oprf::{self, KeyShare, ObjectId, ObjectIdentity, OprfKey};
    use treuhand::format::header::new_object_v3_deterministic;

    /// The fixed tenant OPRF key k, and the coefficient a of the 2-of-2 split f(X) = k + a·X.
    const K: [u8; 32] = [0x07; 32];
    const A: [u8; 32] = [0x09; 32];

    fn scalar(bytes: [u8; 32]) -> Scalar {
        Option::from(Scalar::from_canonical_bytes(bytes)).unwrap()
    }

    fn hex_point(point: &RistrettoPoint) -> String {
        hex::encode(point.compress().as_bytes())
    }

    /// The vectors' object id: bytes 0x00, 0x01, …, 0x1f (so byte order shows).
    fn object_id() -> ObjectId {
        ObjectId(std::array::from_fn(|i| i as u8))
    }

    /// The identity of the vector object: the legacy vectors' tenant, key version, bucket and
    /// key, with [`object_id`].
    fn identity() -> ObjectIdentity {
        ObjectIdentity {
            tenant: "vector-tenant".into(),
            key_version: 7,
            bucket: "vectors".into(),
            key: "dir/object.bin".into(),
            id: object_id(),
        }
    }

    /// The object KEK of [`identity`] under k, through the library's holder, proxy and KEK
    /// code (each step checked against the direct computation in the chain test).
    fn object_kek() -> Kek {
        let identity = identity();
        let secret = OprfKey::from_bytes(&K)
            .unwrap()
            .evaluate_unsplit(&identity)
            .unwrap();
        oprf::object_kek(&secret, &identity).unwrap()
    }

    fn hkdf_sha256(salt: &[u8], ikm: &[u8], info: &[u8]) -> [u8; 32] {
        use ring::hkdf;
        struct Len;
        impl hkdf::KeyType for Len {
            fn len(&self) -> usize {
                32
            }
        }
        let mut out = [0u8; 32];
        hkdf::Salt::new(hkdf::HKDF_SHA256, salt)
            .extract(ikm)
            .expand(&[info], Len)
            .unwrap()
            .fill(&mut out)
            .unwrap();
        out
    }

    /// k, a 2-of-2 split with fixed coefficient, a fixed identity → x, P, K, each K_i and
    /// Y_i, Y, the KEK and the wrapped DEK, in `tests/data/key-hierarchy-v3.txt`. Every step is
    /// computed twice: directly on the group (this test) and through the library (holder
    /// evaluation with its proof, the proxy's verify-and-combine, the customer's local
    /// evaluation, object_kek), and the two must agree.
    #[test]
    fn v3_oprf_key_chain_vectors_are_frozen() {
        let (k, a) = (scalar(K), scalar(A));
        let (k1, k2) = (k + a, k + a + a);
        let g = curve25519_dalek::constants::RISTRETTO_BASEPOINT_POINT;
        let identity = identity();
        let x = identity.encode().unwrap();
        let p = identity.point().unwrap();
        let (y1, y2, y) = (k1 * p, k2 * p, k * p);
        // Lagrange at 0 over {1, 2}: λ_1 = 2, λ_2 = -1.
        assert_eq!(Scalar::from(2u8) * y1 - y2, y);

        // The library: each holder evaluates its share and proves it; the proxy verifies
        // both against K_i and combines; a customer share evaluated locally gives the same.
        let share1 = KeyShare::from_bytes(1, k1.as_bytes()).unwrap();
        let share2 = KeyShare::from_bytes(2, k2.as_bytes()).unwrap();
        assert_eq!(share1.public_key(), k1 * g);
        let e1 = oprf::evaluate(&share1, &identity).unwrap();
        let e2 = oprf::evaluate(&share2, &identity).unwrap();
        assert_eq!((e1.element, e2.element), (y1, y2));
        let tenant_key = OprfKey::from_bytes(&K).unwrap();
        assert_eq!(tenant_key.public_key(), k * g);
        let combined =
            oprf::verify_and_combine(&identity, &[(1, k1 * g, e1), (2, k2 * g, e2)], 2).unwrap();
        assert_eq!(combined, tenant_key.evaluate_unsplit(&identity).unwrap());
        let local = oprf::evaluate_local(&share1, &identity).unwrap();
        let mixed = oprf::combine(&identity, &[local], &[(2, k2 * g, e2)], 2).unwrap();
        assert_eq!(mixed, combined);
        // KEK = HKDF-SHA256(salt = "treuhand-object-kek-v3", IKM = compress(Y), info = x).
        let kek = oprf::object_kek(&combined, &identity).unwrap();
        let by_hand = hkdf_sha256(b"treuhand-object-kek-v3", y.compress().as_bytes(), &x);
        assert_eq!(kek.expose_secret(), &by_hand);
        assert_eq!(&object_kek(), &kek);

        let (_, id) = vector_keys();
        let wrapped = wrap_dek_with_nonce(
            &kek,
            &Dek::from_bytes([0x22; 32]),
            &vector_context(&id),
            [0x33; 12],
        )
        .unwrap();
        let text = format!(
            "k {}\na {}\nk_1 {}\nk_2 {}\nK {}\nK_1 {}\nK_2 {}\nobject_id {}\nx {}\nP {}\n\
             Y_1 {}\nY_2 {}\nY {}\nkek {}\nwrapped_dek {}\n",
            hex::encode(k.as_bytes()),
            hex::encode(a.as_bytes()),
            hex::encode(k1.as_bytes()),
            hex::encode(k2.as_bytes()),
            hex_point(&(k * g)),
            hex_point(&(k1 * g)),
            hex_point(&(k2 * g)),
            hex::encode(object_id().0),
            hex::encode(&x),
            hex_point(&p),
            hex_point(&y1),
            hex_point(&y2),
            hex_point(&y),
            hex::encode(kek.expose_secret()),
            hex::encode(wrapped),
        );
        check("key-hierarchy-v3.txt", text.as_bytes());
    }

    /// The fixed v3 object: the legacy vectors' DEK, wrap nonce and nonce prefix, wrapped
    /// under the chain's KEK; single run, or multipart layout 2 with parts 1 and 3 (attempts
    /// 0x77…, 0x88…). Read back as the proxy reads it (peek the id, derive the KEK, open)
    /// before it is returned.
    fn fixed_v3_object(len: usize, layout: Layout, metadata: &Metadata) -> Vec<u8> {
        let (_, id) = vector_keys();
        let ctx = vector_context(&id);
        let randomness = (Dek::from_bytes([0x22; 32]), [0x33; 12], [0x44; 7]);
        let (cipher, mut out) = new_object_v3_deterministic(
            &object_kek(),
            &ctx,
            object_id(),
            layout,
            randomness,
            metadata,
        )
        .unwrap();
        let plain = plaintext(len);
        if layout == Layout::MultipartKeyed {
            let (a, b) = plain.split_at(len / 2);
            let mut infos = Vec::new();
            let mut attempts = Vec::new();
            for (number, attempt, part) in [(1u32, [0x77; 16], a), (3u32, [0x88; 16], b)] {
                let attempt = PartAttempt(attempt);
                let mut enc = cipher.part_encryptor(number, &attempt).unwrap();
                enc.push(part, &mut out).unwrap();
                enc.finish(&mut out).unwrap();
                infos.push(PartInfo {
                    part_number: number,
                    plaintext_len: part.len() as u64,
                });
                attempts.push(attempt);
            }
            out.extend(cipher.footer_with_attempts(&infos, &attempts).unwrap());
        } else {
            let mut enc = cipher.encryptor(0);
            enc.push(&plain, &mut out).unwrap();
            enc.finish(&mut out).unwrap();
        }
        let info = format::peek_header(&out[..out.len().min(format::HEADER_PROBE_LEN)]).unwrap();
        assert_eq!((info.version, info.object_id), (3, Some(object_id())));
        let peeked = ObjectIdentity {
            tenant: info.tenant,
            key_version: info.key_version,
            bucket: "vectors".into(),
            key: "dir/object.bin".into(),
            id: info.object_id.unwrap(),
        };
        let secret = OprfKey::from_bytes(&K)
            .unwrap()
            .evaluate_unsplit(&peeked)
            .unwrap();
        let kek = oprf::object_kek(&secret, &peeked).unwrap();
        let (reader, _) =
            format::open_object(&kek, &ctx, &out[..out.len().min(format::MAX_HEADER_LEN)]).unwrap();
        assert_eq!(reader.metadata(), metadata);
        let object_layout = if layout.is_multipart() {
            let footer_len = format::footer_len_from_tail(&out[out.len() - 4..]).unwrap();
            reader
                .multipart_layout(&out[out.len() - footer_len..], out.len() as u64)
                .unwrap()
        } else {
            reader.single_layout(out.len() as u64).unwrap()
        };
        assert_eq!(read_back(&object_layout, &out, len), plain);
        out
    }

    #[test]
    fn v3_object_vectors_are_frozen() {
        let none = Metadata::new();
        let m = fixed_metadata();
        for (file, len, layout, metadata) in [
            ("object-v3-empty.bin", 0, Layout::Single, &none),
            ("object-v3-1byte.bin", 1, Layout::Single, &m),
            ("object-v3-two-segments.bin", 65537, Layout::Single, &none),
            ("object-v3-multipart.bin", 70000, Layout::MultipartKeyed, &m),
        ] {
            check(file, &fixed_v3_object(len, layout, metadata));
        }
    }

    /// Reads the frozen v3 vector by the offsets and derivations of docs/format.md §8 alone
    /// (ring directly, none of the format code): version byte, object id, the DEK unwrapped
    /// under the KEK of key-hierarchy-v3.txt with the v2 AAD, M, the MAC label, the sealed
    /// metadata and the body.
    #[test]
    fn v3_object_vector_matches_the_spec_by_hand() {
        use ring::{aead, hmac};
        let hierarchy = std::fs::read_to_string(data_dir().join("key-hierarchy-v3.txt")).unwrap();
        let field = |name: &str| {
            let line = hierarchy
                .lines()
                .find(|l| l.split(' ').next() == Some(name))
                .unwrap();
            hex::decode(line.split(' ').nth(1).unwrap()).unwrap()
        };
        let bytes = std::fs::read(data_dir().join("object-v3-1byte.bin")).unwrap();
        let t = usize::from(bytes[12]);
        assert_eq!(
            &bytes[..8],
            b"TRHD\x03\x01\x10\x00",
            "v3, AES-256-GCM, 64 KiB, single"
        );
        assert_eq!(&bytes[8..12], &7u32.to_be_bytes());
        assert_eq!(&bytes[13..13 + t], b"vector-tenant");
        assert_eq!(bytes[13 + t..45 + t].to_vec(), field("object_id"));
        assert_eq!(bytes[45 + t..105 + t].to_vec(), field("wrapped_dek"));
        // Unwrap: AES-256-GCM(KEK), AAD = "treuhand v1 dek wrap" ‖ len32(tenant) ‖ version32 ‖
        // len32(bucket) ‖ len32(object key), exactly as v1/v2.
        let mut aad = b"treuhand v1 dek wrap".to_vec();
        for (i, part) in [&b"vector-tenant"[..], b"vectors", b"dir/object.bin"]
            .iter()
            .enumerate()
        {
            aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
            aad.extend_from_slice(part);
            if i == 0 {
                aad.extend_from_slice(&7u32.to_be_bytes());
            }
        }
        let kek = aead::LessSafeKey::new(
            aead::UnboundKey::new(&aead::AES_256_GCM, &field("kek")).unwrap(),
        );
        let mut wrapped = bytes[45 + t + 12..105 + t].to_vec();
        let dek = kek
            .open_in_place(
                aead::Nonce::try_assume_unique_for_key(&bytes[45 + t..57 + t]).unwrap(),
                aead::Aad::from(&aad),
                &mut wrapped,
            )
            .unwrap()
            .to_vec();
        assert_eq!(dek, [0x22; 32]);
        assert_eq!(&bytes[105 + t..112 + t], &[0x44; 7]);
        let m = u32::from_be_bytes(bytes[112 + t..116 + t].try_into().unwrap()) as usize;
        let header_len = 148 + t + m;
        assert_eq!(bytes.len(), header_len + 17);
        let k_mac = hmac::Key::new(
            hmac::HMAC_SHA256,
            &hkdf_sha256(&[], &dek, b"treuhand v1 header mac key"),
        );
        let mac_input = [b"treuhand v3 header".as_slice(), &bytes[..116 + t + m]].concat();
        hmac::verify(&k_mac, &mac_input, &bytes[116 + t + m..header_len]).unwrap();
        let k_meta = aead::LessSafeKey::new(
            aead::UnboundKey::new(
                &aead::AES_256_GCM,
                &hkdf_sha256(&[], &dek, b"treuhand v2 metadata key"),
            )
            .unwrap(),
        );
        let mut block = bytes[116 + t..116 + t + m].to_vec();
        let plain = k_meta
            .open_in_place(
                aead::Nonce::assume_unique_for_key([0; 12]),
                aead::Aad::from(b"treuhand v2 metadata"),
                &mut block,
            )
            .unwrap();
        assert_eq!(plain, fixed_metadata().encode().unwrap().as_slice());
        // The body: one final segment under K_seg, nonce N ‖ 0 ‖ 1.
        let k_seg = aead::LessSafeKey::new(
            aead::UnboundKey::new(
                &aead::AES_256_GCM,
                &hkdf_sha256(&[], &dek, b"treuhand v1 segment key"),
            )
            .unwrap(),
        );
        let mut nonce = [0u8; 12];
        nonce[..7].copy_from_slice(&[0x44; 7]);
        nonce[11] = 1;
        let mut segment = bytes[header_len..].to_vec();
        let body = k_seg
            .open_in_place(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::empty(),
                &mut segment,
            )
            .unwrap();
        assert_eq!(body, &plaintext(1)[..]);
    }

    /// The v3 vector without metadata still carries the sealed empty set (M = 18).
    #[test]
    fn v3_empty_vector_has_an_empty_sealed_block() {
        let bytes = std::fs::read(data_dir().join("object-v3-empty.bin")).unwrap();
        let t = usize::from(bytes[12]);
        let m = u32::from_be_bytes(bytes[112 + t..116 + t].try_into().unwrap());
        assert_eq!(m, 18);
        assert_eq!(bytes.len(), 148 + t + 18 + 16);
    }
}
