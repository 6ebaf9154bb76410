//! RFC 9497 §2.2 DLEQ proofs: the general `GenerateProof` / `VerifyProof` (checked against the
//! RFC's vectors), and the same proof for the one shape the per-object path uses (`A = G`,
//! `B = K_i`, one element `C = P`, `D = Y_i`) computed with fewer group operations.
//!
//! The single-element functions produce and accept exactly the proofs of the general ones
//! (tests `object_proof_is_the_rfc_proof` and `object_verification_agrees_with_the_rfc`); they
//! only avoid work the general form repeats for every call:
//!
//! - every encoding is computed once and passed in (`K_i` as registered, `P` from hashing,
//!   `Y_i` as sent), instead of compressing `B`, `C` and `D` again for the seed, the composite
//!   and the challenge (a compression costs a field inversion);
//! - `Z = k·M` is computed as `d_0·Y_i` (the same point, since `Y_i = k·P` and `M = d_0·P`) in
//!   variable time: `d_0` and `Y_i` are public, the secret `k` is not involved;
//! - `t2 = r·G` uses the precomputed basepoint table (constant time; `r` is secret), and the
//!   verifier's `s·G + c·K_i` the basepoint's precomputed NAF table (variable time, public);
//! - `M`, `Z`, `t2` and `t3` are encoded together with one field inversion: each is computed
//!   as its half (by halving the scalar, e.g. `(d_0/2)·P`) and curve25519-dalek's
//!   `double_and_compress_batch` encodes the doubles.
//!
//! Variable-time arithmetic only ever sees public values: the proof scalars, the hash-derived
//! weight `d_0` and the elements `P`, `Y_i`, `M`, `Z`, `K_i`. The secret share `k` and nonce
//! `r` stay in constant-time operations.
//!
//! Batching the verification of several holders' proofs is not possible with this proof form:
//! a proof carries the challenge `c`, not the commitments `t2`, `t3`, so each verification must
//! rebuild its own commitments to recompute its own hash.

use curve25519_dalek::constants::RISTRETTO_BASEPOINT_TABLE;
use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::VartimeMultiscalarMul;
use ring::digest;
use subtle::ConstantTimeEq;

use super::{ELEMENT_LEN, OprfError, PROOF_LEN, dst_for, hash_to_scalar, push_framed};

/// A Chaum–Pedersen DLEQ proof `(c, s)` as RFC 9497 §2.2 defines it. Public data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proof {
    pub(super) c: Scalar,
    pub(super) s: Scalar,
}

impl Proof {
    /// `SerializeScalar(c) || SerializeScalar(s)`.
    pub fn to_bytes(&self) -> [u8; PROOF_LEN] {
        let mut out = [0u8; PROOF_LEN];
        out[..32].copy_from_slice(self.c.as_bytes());
        out[32..].copy_from_slice(self.s.as_bytes());
        out
    }

    /// Parses untrusted bytes; non-canonical scalars are rejected (RFC 9497 §4.1
    /// DeserializeScalar).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, OprfError> {
        let bytes: &[u8; PROOF_LEN] = bytes.try_into().map_err(|_| OprfError::Encoding("proof"))?;
        let (c, s) = bytes.split_at(32);
        Ok(Self {
            c: canonical_scalar(c)?,
            s: canonical_scalar(s)?,
        })
    }
}

pub(super) fn canonical_scalar(bytes: &[u8]) -> Result<Scalar, OprfError> {
    let array: [u8; 32] = bytes
        .try_into()
        .map_err(|_| OprfError::Encoding("scalar"))?;
    Option::from(Scalar::from_canonical_bytes(array)).ok_or(OprfError::Encoding("scalar"))
}

/// The RFC's seed: `H(len‖B ‖ len‖"Seed-"‖context)`.
fn seed(context: &[u8], b: &[u8; ELEMENT_LEN]) -> Result<digest::Digest, OprfError> {
    let mut transcript = Vec::with_capacity(2 + ELEMENT_LEN + 2 + 5 + context.len());
    push_framed(&mut transcript, b)?;
    push_framed(&mut transcript, &dst_for(b"Seed-", context))?;
    Ok(digest::digest(&digest::SHA512, &transcript))
}

/// The weight `d_i` of the pair `(C_i, D_i)` at position `i` of a batch.
fn composite_weight(
    context: &[u8],
    seed: &digest::Digest,
    i: u16,
    c: &[u8; ELEMENT_LEN],
    d: &[u8; ELEMENT_LEN],
) -> Result<Scalar, OprfError> {
    let mut composite = Vec::with_capacity(2 + 64 + 2 + 2 * (2 + ELEMENT_LEN) + 9);
    push_framed(&mut composite, seed.as_ref())?;
    composite.extend_from_slice(&i.to_be_bytes());
    push_framed(&mut composite, c)?;
    push_framed(&mut composite, d)?;
    composite.extend_from_slice(b"Composite");
    hash_to_scalar(&composite, &dst_for(b"HashToScalar-", context))
}

/// RFC 9497 `ComputeComposites` (§2.2.1); with `k` given, the server's `ComputeCompositesFast`.
///
/// The general form (any `A`, any batch) exists for the RFC's vectors and as the reference the
/// single-element functions below are tested against; the product code uses those.
#[cfg(test)]
fn compute_composites(
    context: &[u8],
    k: Option<&Scalar>,
    b: &RistrettoPoint,
    cs: &[RistrettoPoint],
    ds: &[RistrettoPoint],
) -> Result<(RistrettoPoint, RistrettoPoint), OprfError> {
    use curve25519_dalek::traits::Identity;
    if cs.len() != ds.len() {
        return Err(OprfError::Internal("composite lengths"));
    }
    let seed = seed(context, &b.compress().to_bytes())?;
    let mut m = RistrettoPoint::identity();
    let mut z = RistrettoPoint::identity();
    for (i, (c, d)) in cs.iter().zip(ds).enumerate() {
        let i = u16::try_from(i).map_err(|_| OprfError::Internal("batch too large"))?;
        let di = composite_weight(
            context,
            &seed,
            i,
            &c.compress().to_bytes(),
            &d.compress().to_bytes(),
        )?;
        // Public inputs (the elements and their hash-derived weights): variable time is safe.
        m += RistrettoPoint::vartime_multiscalar_mul([di], [c]);
        if k.is_none() {
            z += RistrettoPoint::vartime_multiscalar_mul([di], [d]);
        }
    }
    if let Some(k) = k {
        z = k * m;
    }
    Ok((m, z))
}

/// The challenge `HashToScalar(len‖B ‖ len‖M ‖ len‖Z ‖ len‖t2 ‖ len‖t3 ‖ "Challenge")` over
/// the encodings.
fn challenge(context: &[u8], encodings: [&[u8; ELEMENT_LEN]; 5]) -> Result<Scalar, OprfError> {
    let mut transcript = Vec::with_capacity(5 * (2 + ELEMENT_LEN) + 9);
    for encoding in encodings {
        push_framed(&mut transcript, encoding)?;
    }
    transcript.extend_from_slice(b"Challenge");
    hash_to_scalar(&transcript, &dst_for(b"HashToScalar-", context))
}

/// [`challenge`] of points.
#[cfg(test)]
fn challenge_of(context: &[u8], points: [&RistrettoPoint; 5]) -> Result<Scalar, OprfError> {
    let [b, m, z, t2, t3] = points.map(|p| p.compress().to_bytes());
    challenge(context, [&b, &m, &z, &t2, &t3])
}

/// RFC 9497 `GenerateProof(k, A, B, C, D)` with the nonce `r` given (the vectors fix it).
#[cfg(test)]
pub(super) fn generate_proof_with(
    context: &[u8],
    k: &Scalar,
    a: &RistrettoPoint,
    b: &RistrettoPoint,
    cs: &[RistrettoPoint],
    ds: &[RistrettoPoint],
    r: &Scalar,
) -> Result<Proof, OprfError> {
    let (m, z) = compute_composites(context, Some(k), b, cs, ds)?;
    let t2 = r * a;
    let t3 = r * m;
    let c = challenge_of(context, [b, &m, &z, &t2, &t3])?;
    Ok(Proof { c, s: r - c * k })
}

/// RFC 9497 `VerifyProof(A, B, C, D, proof)`.
#[cfg(test)]
pub(super) fn verify_proof(
    context: &[u8],
    a: &RistrettoPoint,
    b: &RistrettoPoint,
    cs: &[RistrettoPoint],
    ds: &[RistrettoPoint],
    proof: &Proof,
) -> Result<bool, OprfError> {
    let (m, z) = compute_composites(context, None, b, cs, ds)?;
    // Everything here is public (elements, proof), so variable-time multiscalar
    // multiplication is safe and about three times faster than two constant-time products.
    let t2 = RistrettoPoint::vartime_multiscalar_mul([proof.s, proof.c], [a, b]);
    let t3 = RistrettoPoint::vartime_multiscalar_mul([proof.s, proof.c], [m, z]);
    let expected = challenge_of(context, [b, &m, &z, &t2, &t3])?;
    Ok(bool::from(expected.ct_eq(&proof.c)))
}

/// A point with its encoding, so that no step compresses it again.
#[derive(Debug, Clone, Copy)]
pub(super) struct Encoded<'a> {
    pub(super) point: &'a RistrettoPoint,
    pub(super) bytes: &'a [u8; ELEMENT_LEN],
}

/// `(ℓ + 1) / 2`, the inverse of 2 modulo the group order ℓ, little-endian.
const HALF: [u8; 32] = [
    0xf7, 0xe9, 0x7a, 0x2e, 0x8d, 0x31, 0x09, 0x2c, 0x6b, 0xce, 0x7b, 0x51, 0xef, 0x7c, 0x6f, 0x0a,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08,
];

/// `1/2` as a scalar.
pub(super) fn half() -> Scalar {
    Scalar::from_bytes_mod_order(HALF)
}

/// The encodings of `2·Q` for every `Q` given, with one field inversion for all of them
/// (curve25519-dalek's batch compression) instead of one each. The callers compute the halves
/// `Q/2` of the points they need encoded by halving a scalar (`d·P/2 = (d/2)·P`), which is
/// free.
fn encode_doubled<const N: usize>(halves: [&RistrettoPoint; N]) -> [[u8; ELEMENT_LEN]; N] {
    let encoded = RistrettoPoint::double_and_compress_batch(halves);
    // One encoding per point by construction; a missing one would be all zeros, which no
    // challenge matches (fail closed), rather than a panic.
    std::array::from_fn(|i| encoded.get(i).map(|c| c.to_bytes()).unwrap_or_default())
}

/// The seed and weight `d_0` of a one-element batch: everything of `ComputeComposites` but
/// the products.
fn object_weight(
    context: &[u8],
    public: &[u8; ELEMENT_LEN],
    input: &[u8; ELEMENT_LEN],
    output: &[u8; ELEMENT_LEN],
) -> Result<Scalar, OprfError> {
    composite_weight(context, &seed(context, public)?, 0, input, output)
}

/// The holder's proof that `Y = k·P` for the `k` behind `K = k·G`, given `K` as registered
/// (`public`), `P` and `Y` with their encodings, and the secret nonce `r`. The proof of
/// [`generate_proof_with`] with `A = G`, `B = K`, `C = [P]`, `D = [Y]`.
///
/// `M = d_0·P` and `Z = k·M = d_0·Y` are public (the verifier recomputes them), so they are
/// computed in variable time from `d_0`; only `t2 = r·G` and `t3 = r·M` involve a secret
/// (the nonce). All four are computed as halves and encoded in one batch.
pub(super) fn prove_object(
    context: &[u8],
    k: &Scalar,
    public: &[u8; ELEMENT_LEN],
    input: Encoded<'_>,
    output: Encoded<'_>,
    r: &Scalar,
) -> Result<Proof, OprfError> {
    let d0 = object_weight(context, public, input.bytes, output.bytes)?;
    let half_d0 = d0 * half();
    let m_half = RistrettoPoint::vartime_multiscalar_mul([half_d0], [input.point]);
    let z_half = RistrettoPoint::vartime_multiscalar_mul([half_d0], [output.point]);
    // The nonce is secret: constant time, the fixed-base product from the precomputed table.
    let t2_half = &(r * half()) * RISTRETTO_BASEPOINT_TABLE;
    // r·(M/2) = (r·M)/2.
    let t3_half = r * m_half;
    let [m, z, t2, t3] = encode_doubled([&m_half, &z_half, &t2_half, &t3_half]);
    let c = challenge(context, [public, &m, &z, &t2, &t3])?;
    Ok(Proof { c, s: r - c * k })
}

/// [`verify_proof`] for `A = G`, `B = K` (`public`, its point and registered encoding),
/// `C = [P]`, `D = [Y]`. Everything is public, so everything is in variable time, and the
/// four points the challenge hashes are computed as halves and encoded in one batch.
pub(super) fn verify_object(
    context: &[u8],
    public: Encoded<'_>,
    input: Encoded<'_>,
    output: Encoded<'_>,
    proof: &Proof,
) -> Result<bool, OprfError> {
    let d0 = object_weight(context, public.bytes, input.bytes, output.bytes)?;
    let half = half();
    let half_d0 = d0 * half;
    let m_half = RistrettoPoint::vartime_multiscalar_mul([half_d0], [input.point]);
    let z_half = RistrettoPoint::vartime_multiscalar_mul([half_d0], [output.point]);
    // (s·G + c·K)/2 with the basepoint's precomputed table.
    let t2_half = RistrettoPoint::vartime_double_scalar_mul_basepoint(
        &(proof.c * half),
        public.point,
        &(proof.s * half),
    );
    // s·M/2 + c·Z/2 = (s·M + c·Z)/2.
    let t3_half = RistrettoPoint::vartime_multiscalar_mul([proof.s, proof.c], [m_half, z_half]);
    let [m, z, t2, t3] = encode_doubled([&m_half, &z_half, &t2_half, &t3_half]);
    let expected = challenge(context, [public.bytes, &m, &z, &t2, &t3])?;
    Ok(bool::from(expected.ct_eq(&proof.c)))
}
