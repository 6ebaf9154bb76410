#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::combine::lagrange_at_zero;
use super::dleq::{self, generate_proof_with, verify_proof};
use super::*;

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

fn scalar(s: &str) -> Scalar {
    canonical_scalar(&h(s)).unwrap()
}

// RFC 9380 Appendix K.3, expand_message_xmd(SHA-512), DST below. Copied from the RFC via the
// elliptic-curve 0.13.8 crate's test file (src/hash2curve/hash2field/expand_msg/xmd.rs).
const XMD_DST: &[u8] = b"QUUX-V01-CS02-with-expander-SHA512-256";

#[test]
fn expand_message_xmd_sha512_matches_rfc9380_k3() {
    let cases: [(&[u8], usize, &str); 6] = [
        (b"", 0x20, "6b9a7312411d92f921c6f68ca0b6380730a1a4d982c507211a90964c394179ba"),
        (b"abc", 0x20, "0da749f12fbe5483eb066a5f595055679b976e93abe9be6f0f6318bce7aca8dc"),
        (b"abcdef0123456789", 0x20, "087e45a86e2939ee8b91100af1583c4938e0f5fc6c9db4b107b83346bc967f58"),
        (b"q128_qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq", 0x20,
            "7336234ee9983902440f6bc35b348352013becd88938d2afec44311caf8356b3"),
        (b"", 0x80, "41b037d1734a5f8df225dd8c7de38f851efdb45c372887be655212d07251b921b052b62eaed99b46f72f2ef4cc96bfaf254ebbbec091e1a3b9e4fb5e5b619d2e0c5414800a1d882b62bb5cd1778f098b8eb6cb399d5d9d18f5d5842cf5d13d7eb00a7cff859b605da678b318bd0e65ebff70bec88c753b159a805d2c89c55961"),
        (b"abc", 0x80, "7f1dddd13c08b543f2e2037b14cefb255b44c83cc397c1786d975653e36a6b11bdd7732d8b38adb4a0edc26a0cef4bb45217135456e58fbca1703cd6032cb1347ee720b87972d63fbf232587043ed2901bce7f22610c0419751c065922b488431851041310ad659e4b23520e1772ab29dcdeb2002222a363f0c2b1c972b3efe1"),
    ];
    for (msg, len, expected) in cases {
        assert_eq!(
            expand_message_xmd(msg, XMD_DST, len).unwrap(),
            h(expected),
            "msg {msg:?} len {len}"
        );
    }
}

#[test]
fn expand_message_xmd_rejects_out_of_range_lengths() {
    assert_eq!(
        expand_message_xmd(b"", XMD_DST, 0),
        Err(OprfError::ExpandLength)
    );
    assert_eq!(
        expand_message_xmd(b"", XMD_DST, 255 * 64 + 1),
        Err(OprfError::ExpandLength)
    );
    assert_eq!(
        expand_message_xmd(b"", &[b'a'; 256], 32),
        Err(OprfError::ExpandLength)
    );
    assert!(expand_message_xmd(b"", XMD_DST, 255 * 64).is_ok());
}

// RFC 9497 Appendix A.1.2 (ristretto255-SHA512, VOPRF mode), copied from the RFC via the voprf
// 0.5.0 crate's src/tests/cfrg_vectors.rs.
const SKSM: &str = "e6f73f344b79b379f1a0dd37e07ff62e38d9f71345ce62ae3a9bc60b04ccd909";
const PKSM: &str = "c803e2cc6b05fc15064549b5920659ca4a77b2cca6f04f6b357009335476ad4e";
const BLIND: &str = "64d37aed22a27f5191de1c1d69fadb899d8862b58eb4220029e036ec4c1f6706";

struct VoprfVector {
    inputs: &'static [&'static str],
    blinds: &'static [&'static str],
    blinded: &'static [&'static str],
    evaluated: &'static [&'static str],
    proof: &'static str,
    r: &'static str,
    outputs: &'static [&'static str],
}

const OUT1: &str = "b58cfbe118e0cb94d79b5fd6a6dafb98764dff49c14e1770b566e42402da1a7da4d8527693914139caee5bd03903af43a491351d23b430948dd50cde10d32b3c";
const OUT2: &str = "8a9a2f3c7f085b65933594309041fc1898d42d0858e59f90814ae90571a6df60356f4610bf816f27afdd84f47719e480906d27ecd994985890e5f539e7ea74b6";
const R1: &str = "222a5e897cf59db8145db8d16e597e8facb80ae7d4e26d9881aa6f61d645fc0e";

const VOPRF_VECTORS: [VoprfVector; 3] = [
    // A.1.2.1
    VoprfVector {
        inputs: &["00"],
        blinds: &[BLIND],
        blinded: &["863f330cc1a1259ed5a5998a23acfd37fb4351a793a5b3c090b642ddc439b945"],
        evaluated: &["aa8fa048764d5623868679402ff6108d2521884fa138cd7f9c7669a9a014267e"],
        proof: "ddef93772692e535d1a53903db24367355cc2cc78de93b3be5a8ffcc6985dd066d4346421d17bf5117a2a1ff0fcb2a759f58a539dfbe857a40bce4cf49ec600d",
        r: R1,
        outputs: &[OUT1],
    },
    // A.1.2.2
    VoprfVector {
        inputs: &["5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a"],
        blinds: &[BLIND],
        blinded: &["cc0b2a350101881d8a4cba4c80241d74fb7dcbfde4a61fde2f91443c2bf9ef0c"],
        evaluated: &["60a59a57208d48aca71e9e850d22674b611f752bed48b36f7a91b372bd7ad468"],
        proof: "401a0da6264f8cf45bb2f5264bc31e109155600babb3cd4e5af7d181a2c9dc0a67154fabf031fd936051dec80b0b6ae29c9503493dde7393b722eafdf5a50b02",
        r: R1,
        outputs: &[OUT2],
    },
    // A.1.2.3 (batch of two: exercises ComputeComposites over several elements)
    VoprfVector {
        inputs: &["00", "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a"],
        blinds: &[BLIND, R1],
        blinded: &[
            "863f330cc1a1259ed5a5998a23acfd37fb4351a793a5b3c090b642ddc439b945",
            "90a0145ea9da29254c3a56be4fe185465ebb3bf2a1801f7124bbbadac751e654",
        ],
        evaluated: &[
            "aa8fa048764d5623868679402ff6108d2521884fa138cd7f9c7669a9a014267e",
            "cc5ac221950a49ceaa73c8db41b82c20372a4c8d63e5dded2db920b7eee36a2a",
        ],
        proof: "cc203910175d786927eeb44ea847328047892ddf8590e723c37205cb74600b0a5ab5337c8eb4ceae0494c2cf89529dcf94572ed267473d567aeed6ab873dee08",
        r: "419c4f4f5052c53c45f3da494d2b67b220d02118e0857cdbcf037f9ea84bbe0c",
        outputs: &[OUT1, OUT2],
    },
];

/// RFC 9497 §3.3.2 Finalize for one input.
fn finalize(input: &[u8], blind: &Scalar, evaluated: &RistrettoPoint) -> Vec<u8> {
    let unblinded = blind.invert() * evaluated;
    let mut transcript = Vec::new();
    push_framed(&mut transcript, input).unwrap();
    push_framed(&mut transcript, unblinded.compress().as_bytes()).unwrap();
    transcript.extend_from_slice(b"Finalize");
    digest::digest(&digest::SHA512, &transcript)
        .as_ref()
        .to_vec()
}

#[test]
fn voprf_ristretto255_sha512_matches_rfc9497_a12() {
    let sk = scalar(SKSM);
    let pk = RistrettoPoint::mul_base(&sk);
    assert_eq!(pk.compress().as_bytes().to_vec(), h(PKSM));
    let g = RistrettoPoint::mul_base(&Scalar::ONE);
    let h2g = dst_for(b"HashToGroup-", VOPRF_CONTEXT);
    for (n, v) in VOPRF_VECTORS.iter().enumerate() {
        let mut cs = Vec::new();
        let mut ds = Vec::new();
        for i in 0..v.inputs.len() {
            let input = h(v.inputs[i]);
            let blind = scalar(v.blinds[i]);
            let blinded = blind * hash_to_ristretto255(&input, &h2g).unwrap();
            assert_eq!(
                blinded.compress().as_bytes().to_vec(),
                h(v.blinded[i]),
                "vector {n} blinded {i}"
            );
            let evaluated = sk * blinded;
            assert_eq!(
                evaluated.compress().as_bytes().to_vec(),
                h(v.evaluated[i]),
                "vector {n} evaluated {i}"
            );
            assert_eq!(
                finalize(&input, &blind, &evaluated),
                h(v.outputs[i]),
                "vector {n} output {i}"
            );
            cs.push(blinded);
            ds.push(evaluated);
        }
        let proof =
            generate_proof_with(VOPRF_CONTEXT, &sk, &g, &pk, &cs, &ds, &scalar(v.r)).unwrap();
        assert_eq!(proof.to_bytes().to_vec(), h(v.proof), "vector {n} proof");
        let parsed = Proof::from_bytes(&h(v.proof)).unwrap();
        assert!(
            verify_proof(VOPRF_CONTEXT, &g, &pk, &cs, &ds, &parsed).unwrap(),
            "vector {n} verify"
        );
        // The same proof must fail for a different evaluation: the verifier is not vacuous.
        let mut wrong = ds.clone();
        wrong[0] += g;
        assert!(
            !verify_proof(VOPRF_CONTEXT, &g, &pk, &cs, &wrong, &parsed).unwrap(),
            "vector {n} wrong"
        );
    }
}

fn identity(bucket: &str, key: &str) -> ObjectIdentity {
    ObjectIdentity {
        tenant: "acme".into(),
        key_version: 1,
        bucket: bucket.into(),
        key: key.into(),
        id: ObjectId([7; 32]),
    }
}

fn setup(t: usize, n: usize) -> (OprfKey, Vec<KeyShare>, PublicKeys) {
    let k = OprfKey::random().unwrap();
    let (shares, public) = split(&k, t, n).unwrap();
    (k, shares, public)
}

/// Every non-empty subset of `shares`, with the bitmask that chose it (bit i = shares[i]).
fn subsets(shares: &[KeyShare]) -> impl Iterator<Item = (u32, Vec<&KeyShare>)> {
    (1u32..(1 << shares.len())).map(move |mask| {
        let subset = shares
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, s)| s)
            .collect();
        (mask, subset)
    })
}

fn answers(shares: &[&KeyShare], id: &ObjectIdentity) -> Vec<(u8, RistrettoPoint, Evaluation)> {
    shares
        .iter()
        .map(|s| (s.index(), s.public_key(), evaluate(s, id).unwrap()))
        .collect()
}

#[test]
fn any_threshold_subset_combines_to_k_times_p() {
    let id = identity("photos", "2026/cat.jpg");
    for (t, n) in [(2, 2), (2, 3), (3, 5)] {
        let (k, shares, public) = setup(t, n);
        assert_eq!(public.key, k.public_key());
        let direct = k.evaluate_unsplit(&id).unwrap();
        // Every subset of size >= t (bitmask over the n shares).
        for (mask, subset) in subsets(&shares) {
            let result = verify_and_combine(&id, &answers(&subset, &id), t);
            if subset.len() >= t {
                assert_eq!(result.unwrap(), direct, "{t}-of-{n} mask {mask:b}");
            } else {
                assert_eq!(
                    result.unwrap_err(),
                    OprfError::NotEnough {
                        have: subset.len(),
                        need: t
                    }
                );
            }
        }
    }
}

#[test]
fn tampered_element_names_the_holder() {
    let id = identity("b", "k");
    let (_, shares, _) = setup(2, 3);
    let mut evals = answers(&[&shares[0], &shares[1], &shares[2]], &id);
    evals[1].2.element += RistrettoPoint::mul_base(&Scalar::ONE);
    assert_eq!(
        verify_and_combine(&id, &evals, 2).unwrap_err(),
        OprfError::BadEvaluation { index: 2 }
    );
}

#[test]
fn tampered_proof_names_the_holder() {
    let id = identity("b", "k");
    let (_, shares, _) = setup(2, 3);
    let mut evals = answers(&[&shares[0], &shares[2]], &id);
    evals[1].2.proof.s += Scalar::ONE;
    assert_eq!(
        verify_and_combine(&id, &evals, 2).unwrap_err(),
        OprfError::BadEvaluation { index: 3 }
    );
}

#[test]
fn evaluation_for_another_object_or_key_is_rejected() {
    let id = identity("b", "k");
    let other = identity("b", "k2");
    let (_, shares, _) = setup(2, 2);
    // A holder answering for a different object than the proxy asked about.
    let mut evals = answers(&[&shares[0], &shares[1]], &id);
    evals[0].2 = evaluate(&shares[0], &other).unwrap();
    assert_eq!(
        verify_and_combine(&id, &evals, 2).unwrap_err(),
        OprfError::BadEvaluation { index: 1 }
    );
    // A holder using a share that is not the one registered under its K_i.
    let (_, foreign, _) = setup(2, 2);
    let mut evals = answers(&[&shares[0], &shares[1]], &id);
    evals[1].2 = evaluate(&foreign[1], &id).unwrap();
    assert_eq!(
        verify_and_combine(&id, &evals, 2).unwrap_err(),
        OprfError::BadEvaluation { index: 2 }
    );
}

#[test]
fn duplicate_indices_are_rejected() {
    let id = identity("b", "k");
    let (_, shares, _) = setup(2, 3);
    let evals = answers(&[&shares[0], &shares[0]], &id);
    assert_eq!(
        verify_and_combine(&id, &evals, 2).unwrap_err(),
        OprfError::DuplicateIndex { index: 1 }
    );
}

#[test]
fn split_rejects_bad_parameters() {
    let k = OprfKey::random().unwrap();
    for (t, n) in [(1, 3), (0, 3), (4, 3), (2, 256)] {
        assert_eq!(
            split(&k, t, n).unwrap_err(),
            OprfError::InvalidThreshold {
                threshold: t,
                holders: n
            }
        );
    }
    let zero = OprfKey::from_bytes(&[0u8; 32]).unwrap();
    assert_eq!(split(&zero, 2, 2).unwrap_err(), OprfError::ZeroKey);
    assert!(split(&k, 255, 255).is_ok());
}

#[test]
fn every_identity_field_changes_the_key() {
    let (k, _, _) = setup(2, 2);
    let base = identity("b", "k");
    let mut variants = vec![base.clone()];
    variants.push(ObjectIdentity {
        tenant: "acme2".into(),
        ..base.clone()
    });
    variants.push(ObjectIdentity {
        key_version: 2,
        ..base.clone()
    });
    variants.push(ObjectIdentity {
        bucket: "b2".into(),
        ..base.clone()
    });
    variants.push(ObjectIdentity {
        key: "k2".into(),
        ..base.clone()
    });
    variants.push(ObjectIdentity {
        id: ObjectId([8; 32]),
        ..base.clone()
    });
    let keks: Vec<[u8; 32]> = variants
        .iter()
        .map(|id| {
            *object_kek(&k.evaluate_unsplit(id).unwrap(), id)
                .unwrap()
                .expose_secret()
        })
        .collect();
    for i in 0..keks.len() {
        for j in (i + 1)..keks.len() {
            assert_ne!(keks[i], keks[j], "variants {i} and {j}");
        }
    }
    // Deterministic: the same identity and key give the same KEK.
    let again = object_kek(&k.evaluate_unsplit(&base).unwrap(), &base).unwrap();
    assert_eq!(*again.expose_secret(), keks[0]);
}

#[test]
fn identity_encoding_is_unambiguous() {
    let a = identity("a", "bc");
    let b = identity("ab", "c");
    assert_ne!(a.encode().unwrap(), b.encode().unwrap());
    assert_ne!(a.point().unwrap(), b.point().unwrap());
    let c = ObjectIdentity {
        tenant: "acmea".into(),
        bucket: "".into(),
        ..identity("", "bc")
    };
    let d = ObjectIdentity {
        tenant: "acme".into(),
        ..identity("a", "bc")
    };
    assert_ne!(c.encode().unwrap(), d.encode().unwrap());
}

#[test]
fn debug_of_secrets_is_redacted() {
    let (k, shares, _) = setup(2, 2);
    let id = identity("b", "k");
    let secret = k.evaluate_unsplit(&id).unwrap();
    let share_hex = hex::encode(*shares[0].expose_secret());
    let key_hex = hex::encode(k.0.to_bytes());
    let secret_hex = hex::encode(secret.0.compress().as_bytes());
    for (text, hidden) in [
        (format!("{k:?}"), &key_hex),
        (format!("{:?}", shares[0]), &share_hex),
        (format!("{secret:?}"), &secret_hex),
    ] {
        assert!(text.contains("REDACTED"), "{text}");
        assert!(!text.contains(hidden.as_str()), "{text}");
    }
}

#[test]
fn malformed_wire_bytes_are_errors_not_panics() {
    assert!(Evaluation::from_bytes(&[0u8; 31], &[0u8; 64]).is_err());
    // The identity element is rejected (RFC 9497 DeserializeElement).
    assert!(Evaluation::from_bytes(&[0u8; 32], &[0u8; 64]).is_err());
    // A non-canonical scalar (all 0xff) is rejected.
    let g = RistrettoPoint::mul_base(&Scalar::ONE).compress().to_bytes();
    assert!(Evaluation::from_bytes(&g, &[0xff; 64]).is_err());
    assert!(Evaluation::from_bytes(&g, &[0u8; 63]).is_err());
    assert_eq!(
        KeyShare::from_bytes(0, &[1u8; 32]).unwrap_err(),
        OprfError::ZeroIndex
    );
}

#[test]
fn evaluation_round_trips_through_bytes() {
    let id = identity("b", "k");
    let (_, shares, _) = setup(2, 2);
    let e = evaluate(&shares[0], &id).unwrap();
    let parsed =
        Evaluation::from_bytes(e.element.compress().as_bytes(), &e.proof.to_bytes()).unwrap();
    assert_eq!(parsed, e);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(16))]
    #[test]
    fn combining_matches_direct_evaluation_for_any_object(
        bucket in "[a-z0-9.-]{0,20}", key in ".{0,40}", id in proptest::array::uniform32(0u8..),
        version in 0u32..,
    ) {
        let ident = ObjectIdentity { tenant: "t".into(), key_version: version, bucket, key, id: ObjectId(id) };
        let (k, shares, _) = setup(2, 3);
        let combined = verify_and_combine(&ident, &answers(&[&shares[2], &shares[0]], &ident), 2).unwrap();
        proptest::prop_assert_eq!(combined, k.evaluate_unsplit(&ident).unwrap());
    }
}

#[test]
fn share_round_trips_and_compares_index_and_value() {
    let (_, shares, public) = setup(2, 3);
    let copy = KeyShare::from_bytes(shares[0].index(), shares[0].expose_secret().as_ref()).unwrap();
    assert_eq!(copy, shares[0]);
    assert_eq!((copy.index(), copy.public_key()), public.holders[0]);
    let moved = KeyShare::from_bytes(2, shares[0].expose_secret().as_ref()).unwrap();
    assert_ne!(moved, shares[0]);
    assert_ne!(shares[1], shares[0]);
}

/// The per-object proof, P, Y and K for a fresh share.
fn object_statement(
    share: &KeyShare,
    id: &ObjectIdentity,
) -> (
    ObjectPoint,
    RistrettoPoint,
    [u8; 32],
    RistrettoPoint,
    [u8; 32],
) {
    let p = id.object_point().unwrap();
    let y = share.value * p.point;
    let public = share.public_key();
    (
        p,
        y,
        y.compress().to_bytes(),
        public,
        public.compress().to_bytes(),
    )
}

#[test]
fn object_proof_is_the_rfc_proof() {
    let (_, shares, _) = setup(2, 3);
    let g = RistrettoPoint::mul_base(&Scalar::ONE);
    for (n, share) in shares.iter().enumerate() {
        let id = identity("b", &format!("k{n}"));
        let (p, y, y_bytes, public, public_bytes) = object_statement(share, &id);
        let r = random_scalar(&SystemRandom::new()).unwrap();
        let fast = dleq::prove_object(
            OBJECT_CONTEXT,
            &share.value,
            &public_bytes,
            p.encoded(),
            Encoded {
                point: &y,
                bytes: &y_bytes,
            },
            &r,
        )
        .unwrap();
        let reference = generate_proof_with(
            OBJECT_CONTEXT,
            &share.value,
            &g,
            &public,
            &[p.point],
            &[y],
            &r,
        )
        .unwrap();
        assert_eq!(fast, reference, "share {n}");
    }
}

#[test]
fn object_verification_agrees_with_the_rfc() {
    let (_, shares, _) = setup(2, 2);
    let g = RistrettoPoint::mul_base(&Scalar::ONE);
    let id = identity("b", "k");
    let (p, y, _, public, public_bytes) = object_statement(&shares[0], &id);
    let honest = evaluate(&shares[0], &id).unwrap();
    let mut wrong_s = honest.proof;
    wrong_s.s += Scalar::ONE;
    let mut wrong_c = honest.proof;
    wrong_c.c += Scalar::ONE;
    // (element, proof, public key) combinations, honest first.
    let other_public = shares[1].public_key();
    let cases = [
        (y, honest.proof, public),
        (y + g, honest.proof, public),
        (y, wrong_s, public),
        (y, wrong_c, public),
        (y, honest.proof, other_public),
    ];
    for (n, (element, proof, key)) in cases.iter().enumerate() {
        let element_bytes = element.compress().to_bytes();
        let key_bytes = key.compress().to_bytes();
        let fast = dleq::verify_object(
            OBJECT_CONTEXT,
            Encoded {
                point: key,
                bytes: &key_bytes,
            },
            p.encoded(),
            Encoded {
                point: element,
                bytes: &element_bytes,
            },
            proof,
        )
        .unwrap();
        let reference =
            verify_proof(OBJECT_CONTEXT, &g, key, &[p.point], &[*element], proof).unwrap();
        assert_eq!(fast, reference, "case {n}");
        assert_eq!(fast, n == 0, "case {n}");
    }
    assert_eq!(public_bytes, public.compress().to_bytes());
}

#[test]
fn lagrange_weights_match_one_at_a_time() {
    for indices in [
        vec![1u8, 2],
        vec![2, 1],
        vec![1, 3],
        vec![5, 2, 200],
        vec![1, 2, 3, 4, 255],
    ] {
        let weights = lagrange_at_zero(&indices).unwrap();
        for (i, weight) in indices.iter().zip(&weights) {
            assert_eq!(
                *weight,
                lagrange_at(Scalar::ZERO, *i, indices.iter().copied()).unwrap(),
                "{indices:?}"
            );
        }
    }
}

#[test]
fn a_holder_answering_with_the_wrong_registered_key_is_refused() {
    let id = identity("b", "k");
    let (_, shares, _) = setup(2, 2);
    let (_, foreign, _) = setup(2, 2);
    let wrong = foreign[1].public_key().compress().to_bytes();
    let (answer, _) = evaluate_registered(&shares[1], &wrong, &id).unwrap();
    let local = evaluate_local(&shares[0], &id).unwrap();
    assert_eq!(
        combine(&id, &[local], &[(2, shares[1].public_key(), answer)], 2).unwrap_err(),
        OprfError::BadEvaluation { index: 2 }
    );
}

#[test]
fn registered_evaluation_combines_and_its_bytes_are_its_encoding() {
    let id = identity("photos", "a.jpg");
    let (k, shares, public) = setup(2, 3);
    let registered = public.holders[2].1.compress().to_bytes();
    let (answer, bytes) = evaluate_registered(&shares[2], &registered, &id).unwrap();
    assert_eq!(
        Evaluation::from_bytes(&bytes.element, &bytes.proof).unwrap(),
        answer
    );
    let point = id.object_point().unwrap();
    let local = evaluate_local_at(&shares[0], &point);
    let registered = RegisteredKey::from_bytes(&registered).unwrap();
    let y = combine_at(&point, &[local], &[(3, registered, answer)], 2).unwrap();
    assert_eq!(y, k.evaluate_unsplit(&id).unwrap());
}

#[test]
fn half_is_the_inverse_of_two() {
    assert_eq!(dleq::half() * Scalar::from(2u8), Scalar::ONE);
}

#[test]
fn a_weighted_local_evaluation_combines_for_its_own_set_and_for_any_other() {
    let id = identity("photos", "w.jpg");
    for (t, n) in [(2, 2), (3, 3), (2, 3)] {
        let (k, shares, _) = setup(t, n);
        let direct = k.evaluate_unsplit(&id).unwrap();
        let point = id.object_point().unwrap();
        let everyone: Vec<u8> = shares.iter().map(KeyShare::index).collect();
        // Every subset of size >= t that contains the local share (index 1).
        for (mask, subset) in subsets(&shares) {
            if subset.len() < t || subset[0].index() != 1 {
                continue;
            }
            let local = evaluate_local_weighted(&shares[0], &point, &everyone).unwrap();
            let remote: Vec<_> = answers(&subset[1..], &id)
                .into_iter()
                .map(|(i, public, answer)| (i, RegisteredKey::from_point(public), answer))
                .collect();
            let y = combine_at(&point, &[local], &remote, t).unwrap();
            assert_eq!(y, direct, "{t}-of-{n} mask {mask:b}");
        }
    }
}

#[test]
fn a_weighted_local_evaluation_refuses_a_set_without_its_holder() {
    let (_, shares, _) = setup(2, 3);
    let point = identity("b", "k").object_point().unwrap();
    assert_eq!(
        evaluate_local_weighted(&shares[0], &point, &[2, 3]).unwrap_err(),
        OprfError::Internal("the share is not one of the holders")
    );
    assert_eq!(
        evaluate_local_weighted(&shares[0], &point, &[1, 2, 2]).unwrap_err(),
        OprfError::DuplicateIndex { index: 2 }
    );
    assert_eq!(
        evaluate_local_weighted(&shares[0], &point, &[0, 1]).unwrap_err(),
        OprfError::ZeroIndex
    );
}
