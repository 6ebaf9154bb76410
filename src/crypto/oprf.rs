//! Threshold verifiable OPRF over ristretto255 (issue 12): the pure primitives, NOT yet wired
//! into the proxy, the trustee or the object format. See `docs/oprf.md`.
//!
//! Three layers, each with vectors or behaviour tests below:
//! 1. RFC 9380 `expand_message_xmd` with SHA-512 and `hash_to_ristretto255`;
//! 2. RFC 9497 (ristretto255-SHA512, VOPRF mode) blinding, evaluation and the DLEQ proof
//!    (`GenerateProof` / `VerifyProof` with `ComputeComposites[Fast]`), checked against the
//!    RFC's Appendix A.1.2 vectors;
//! 3. the 2HashDH / DiSE threshold layer: Shamir over the scalar field, per-holder evaluation
//!    `Y_i = k_i·P` with a DLEQ proof, and the proxy's verify-then-combine in the exponent.
//!
//! ring supplies SHA-512, HKDF and randomness; curve25519-dalek supplies only the group.

mod combine;
mod dleq;

use curve25519_dalek::constants::RISTRETTO_BASEPOINT_TABLE;
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::Identity;
use ring::digest;
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

pub(crate) use self::combine::lagrange_at;
pub use self::combine::{
    LocalEvaluation, combine, combine_at, evaluate_local, evaluate_local_at,
    evaluate_local_weighted, verify_and_combine,
};
pub use self::dleq::Proof;
use self::dleq::{Encoded, canonical_scalar};
use crate::secret::{KEY_LEN, Kek};

/// RFC 9497 §4.1 context string for ristretto255-SHA512 in VOPRF mode (0x01).
pub const VOPRF_CONTEXT: &[u8] = b"OPRFV1-\x01-ristretto255-SHA512";

/// treuhand's own context string for the per-object proofs. The RFC's proof construction is
/// reused unchanged, but under a context of our own so a treuhand proof can never be replayed
/// as (or confused with) an RFC 9497 VOPRF proof: the objects are not blinded inputs.
pub const OBJECT_CONTEXT: &[u8] = b"treuhand-object-v3-ristretto255-SHA512";

/// Domain separation tag for hashing an object identity to `P`.
pub const DST_OBJECT: &[u8] = b"HashToGroup-treuhand-object-v3-ristretto255-SHA512";

/// HKDF salt for the object KEK: binds the derivation to this construction and version.
const KEK_SALT: &[u8] = b"treuhand-object-kek-v3";

/// Length of a serialized element or scalar.
pub const ELEMENT_LEN: usize = 32;
/// Length of a serialized proof: challenge `c` then response `s`, 32 bytes each.
pub const PROOF_LEN: usize = 64;

/// Errors of the OPRF layer. None carries secret material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum OprfError {
    /// `expand_message_xmd` parameters outside RFC 9380 §5.3.1 (length or DST too long).
    #[error("expand_message_xmd: invalid length or DST")]
    ExpandLength,
    /// Threshold outside 2 ≤ t ≤ n ≤ 255.
    #[error("invalid threshold {threshold}-of-{holders}: need 2 <= t <= n <= 255")]
    InvalidThreshold {
        /// t.
        threshold: usize,
        /// n.
        holders: usize,
    },
    /// The key to split is zero (its public key would be the identity).
    #[error("the key to split is zero")]
    ZeroKey,
    /// Holder index 0 is reserved: the secret is the polynomial's value at 0.
    #[error("holder index 0 is not allowed")]
    ZeroIndex,
    /// A holder's DLEQ proof does not verify, or its element is malformed.
    #[error("the evaluation of holder {index} does not verify")]
    BadEvaluation {
        /// The holder's index.
        index: u8,
    },
    /// Two evaluations with the same holder index.
    #[error("duplicate evaluation for holder {index}")]
    DuplicateIndex {
        /// The repeated index.
        index: u8,
    },
    /// Fewer distinct holders than the threshold.
    #[error("not enough evaluations: have {have}, need {need}")]
    NotEnough {
        /// Evaluations given.
        have: usize,
        /// Threshold.
        need: usize,
    },
    /// A field of an object identity is longer than its length prefix can say.
    #[error("object identity field too long")]
    IdentityTooLong,
    /// Bytes that are not a canonical element or scalar.
    #[error("malformed {0}")]
    Encoding(&'static str),
    /// The operating system RNG failed.
    #[error("the system random number generator failed")]
    Random,
    /// An internal invariant failed; never caused by input.
    #[error("internal OPRF error: {0}")]
    Internal(&'static str),
}

// ---------------------------------------------------------------------------------------------
// RFC 9380: expand_message_xmd (SHA-512) and hash_to_ristretto255
// ---------------------------------------------------------------------------------------------

/// SHA-512 output length (b_in_bytes).
const B_IN_BYTES: usize = 64;
/// SHA-512 block length (s_in_bytes).
const S_IN_BYTES: usize = 128;

/// RFC 9380 §5.3.1 `expand_message_xmd` with SHA-512.
///
/// DSTs longer than 255 bytes are rejected rather than hashed (§5.3.3): every DST here is a
/// constant well under that, so the oversize path would be untested code.
pub fn expand_message_xmd(
    msg: &[u8],
    dst: &[u8],
    len_in_bytes: usize,
) -> Result<Vec<u8>, OprfError> {
    let ell = len_in_bytes.div_ceil(B_IN_BYTES);
    if ell == 0 || ell > 255 || len_in_bytes > usize::from(u16::MAX) || dst.len() > 255 {
        return Err(OprfError::ExpandLength);
    }
    let len_u16 = u16::try_from(len_in_bytes).map_err(|_| OprfError::ExpandLength)?;
    let dst_len = u8::try_from(dst.len()).map_err(|_| OprfError::ExpandLength)?;

    // b_0 = H(Z_pad || msg || l_i_b_str || I2OSP(0, 1) || DST_prime)
    let mut ctx = digest::Context::new(&digest::SHA512);
    ctx.update(&[0u8; S_IN_BYTES]);
    ctx.update(msg);
    ctx.update(&len_u16.to_be_bytes());
    ctx.update(&[0u8]);
    ctx.update(dst);
    ctx.update(&[dst_len]);
    let b0 = ctx.finish();

    // b_1 = H(b_0 || I2OSP(1, 1) || DST_prime); b_i = H(strxor(b_0, b_{i-1}) || I2OSP(i, 1) || DST_prime)
    let mut out = Vec::with_capacity(ell * B_IN_BYTES);
    let mut prev = [0u8; B_IN_BYTES];
    for i in 1..=ell {
        let mut input = [0u8; B_IN_BYTES];
        for (slot, (a, b)) in input.iter_mut().zip(b0.as_ref().iter().zip(prev.iter())) {
            *slot = a ^ b;
        }
        let mut ctx = digest::Context::new(&digest::SHA512);
        ctx.update(&input);
        // ell <= 255 was checked above, so the counter fits a byte.
        ctx.update(&[u8::try_from(i).map_err(|_| OprfError::ExpandLength)?]);
        ctx.update(dst);
        ctx.update(&[dst_len]);
        let bi = ctx.finish();
        prev.copy_from_slice(bi.as_ref());
        out.extend_from_slice(bi.as_ref());
    }
    out.truncate(len_in_bytes);
    Ok(out)
}

/// RFC 9380 `hash_to_ristretto255`: 64 uniform bytes through the ristretto255 one-way map.
pub fn hash_to_ristretto255(msg: &[u8], dst: &[u8]) -> Result<RistrettoPoint, OprfError> {
    let uniform = Zeroizing::new(expand_message_xmd(msg, dst, 64)?);
    let wide: &[u8; 64] = uniform
        .as_slice()
        .try_into()
        .map_err(|_| OprfError::Internal("expand length"))?;
    Ok(RistrettoPoint::from_uniform_bytes(wide))
}

/// RFC 9497 §4.1 `HashToScalar`: 64 uniform bytes reduced mod ℓ.
fn hash_to_scalar(msg: &[u8], dst: &[u8]) -> Result<Scalar, OprfError> {
    let uniform = Zeroizing::new(expand_message_xmd(msg, dst, 64)?);
    let wide: &[u8; 64] = uniform
        .as_slice()
        .try_into()
        .map_err(|_| OprfError::Internal("expand length"))?;
    Ok(Scalar::from_bytes_mod_order_wide(wide))
}

fn dst_for(prefix: &[u8], context: &[u8]) -> Vec<u8> {
    [prefix, context].concat()
}

/// Appends `I2OSP(len(data), 2) || data`, the RFC 9497 transcript framing. Every datum
/// framed here is a 32-byte element, a 64-byte seed or a constant DST, so the u16 always fits.
fn push_framed(out: &mut Vec<u8>, data: &[u8]) -> Result<(), OprfError> {
    let len = u16::try_from(data.len()).map_err(|_| OprfError::Internal("frame length"))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// RFC 9497 §2.2: DLEQ proofs (in `dleq`)
// ---------------------------------------------------------------------------------------------

/// Parses an untrusted element; rejects non-canonical encodings and the identity (RFC 9497
/// §4.1 DeserializeElement).
pub fn element_from_bytes(bytes: &[u8]) -> Result<RistrettoPoint, OprfError> {
    let compressed =
        CompressedRistretto::from_slice(bytes).map_err(|_| OprfError::Encoding("element"))?;
    let point = compressed
        .decompress()
        .ok_or(OprfError::Encoding("element"))?;
    if point == RistrettoPoint::identity() {
        return Err(OprfError::Encoding("element"));
    }
    Ok(point)
}

/// A uniformly random scalar: 64 bytes from the OS reduced mod ℓ (bias < 2^-250).
fn random_scalar(rng: &SystemRandom) -> Result<Scalar, OprfError> {
    let mut wide = Zeroizing::new([0u8; 64]);
    rng.fill(wide.as_mut()).map_err(|_| OprfError::Random)?;
    Ok(Scalar::from_bytes_mod_order_wide(&wide))
}

// ---------------------------------------------------------------------------------------------
// Threshold layer (2HashDH / DiSE)
// ---------------------------------------------------------------------------------------------

/// A random 32-byte object id, chosen at each write so that two objects under the same name
/// still get unrelated keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectId(pub [u8; 32]);

impl ObjectId {
    /// A fresh random id.
    pub fn random() -> Result<Self, OprfError> {
        let mut id = [0u8; 32];
        SystemRandom::new()
            .fill(&mut id)
            .map_err(|_| OprfError::Random)?;
        Ok(Self(id))
    }
}

/// Everything an object key is bound to. Public: the holder sees it and logs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectIdentity {
    /// Tenant id.
    pub tenant: String,
    /// Tenant key version.
    pub key_version: u32,
    /// Bucket name.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// Per-write random id.
    pub id: ObjectId,
}

impl ObjectIdentity {
    /// The encoding `x`: `"treuhand-object-v3" || u32 len || tenant || u32 key_version ||
    /// u32 len || bucket || u32 len || key || id`, all integers big-endian. Every variable
    /// field is length-prefixed, so no two identities share an encoding.
    pub fn encode(&self) -> Result<Vec<u8>, OprfError> {
        let mut out = Vec::with_capacity(
            18 + 16 + self.tenant.len() + self.bucket.len() + self.key.len() + 32,
        );
        out.extend_from_slice(b"treuhand-object-v3");
        push_u32_framed(&mut out, self.tenant.as_bytes())?;
        out.extend_from_slice(&self.key_version.to_be_bytes());
        push_u32_framed(&mut out, self.bucket.as_bytes())?;
        push_u32_framed(&mut out, self.key.as_bytes())?;
        out.extend_from_slice(&self.id.0);
        Ok(out)
    }

    /// `P = hash_to_ristretto255(x, DST_OBJECT)`.
    pub fn point(&self) -> Result<RistrettoPoint, OprfError> {
        hash_to_ristretto255(&self.encode()?, DST_OBJECT)
    }

    /// `P` with its encoding, for the `_at` functions: one hash to the curve (and one
    /// compression) per derivation instead of one per step.
    pub fn object_point(&self) -> Result<ObjectPoint, OprfError> {
        let point = self.point()?;
        Ok(ObjectPoint {
            point,
            bytes: point.compress().to_bytes(),
        })
    }
}

/// A holder's registered public key `K_i` as a point with its encoding, parsed once (for
/// callers that keep it across derivations, so that neither decompressing nor compressing it
/// is paid per request). Public.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegisteredKey {
    point: RistrettoPoint,
    bytes: [u8; ELEMENT_LEN],
}

impl RegisteredKey {
    /// Parses an encoded key as [`element_from_bytes`] does.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, OprfError> {
        let point = element_from_bytes(bytes)?;
        let bytes = bytes
            .try_into()
            .map_err(|_| OprfError::Encoding("element"))?;
        Ok(Self { point, bytes })
    }

    /// The key of a point (one compression).
    pub fn from_point(point: RistrettoPoint) -> Self {
        Self {
            point,
            bytes: point.compress().to_bytes(),
        }
    }

    /// `K_i`.
    pub fn point(&self) -> &RistrettoPoint {
        &self.point
    }

    fn encoded(&self) -> Encoded<'_> {
        Encoded {
            point: &self.point,
            bytes: &self.bytes,
        }
    }
}

/// `P = hash_to_ristretto255(x)` of one identity with its encoding, from
/// [`ObjectIdentity::object_point`] only (so it is always the hash of an identity). Public.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectPoint {
    point: RistrettoPoint,
    bytes: [u8; ELEMENT_LEN],
}

impl ObjectPoint {
    fn encoded(&self) -> Encoded<'_> {
        Encoded {
            point: &self.point,
            bytes: &self.bytes,
        }
    }
}

fn push_u32_framed(out: &mut Vec<u8>, data: &[u8]) -> Result<(), OprfError> {
    let len = u32::try_from(data.len()).map_err(|_| OprfError::IdentityTooLong)?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data);
    Ok(())
}

/// The whole tenant OPRF key `k`. Exists only at the customer's key ceremony.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct OprfKey(Scalar);

impl OprfKey {
    /// A fresh random non-zero key.
    pub fn random() -> Result<Self, OprfError> {
        let rng = SystemRandom::new();
        loop {
            let k = random_scalar(&rng)?;
            // Zero has probability 2^-252; looping keeps split's precondition without a panic.
            if k != Scalar::ZERO {
                return Ok(Self(k));
            }
        }
    }

    /// Parses a canonical scalar (e.g. for a ceremony's backup).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, OprfError> {
        Ok(Self(canonical_scalar(bytes)?))
    }

    /// `K = k·G`.
    pub fn public_key(&self) -> RistrettoPoint {
        &self.0 * RISTRETTO_BASEPOINT_TABLE
    }

    /// `Y = k·P` computed directly; the reference that combining must reproduce.
    pub fn evaluate_unsplit(&self, identity: &ObjectIdentity) -> Result<ObjectSecret, OprfError> {
        Ok(ObjectSecret(self.0 * identity.point()?))
    }
}

impl std::fmt::Debug for OprfKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OprfKey([REDACTED])")
    }
}

impl PartialEq for OprfKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}
impl Eq for OprfKey {}

/// One holder's Shamir share `(i, k_i)` of the tenant OPRF key.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct KeyShare {
    index: u8,
    value: Scalar,
}

impl KeyShare {
    /// The public index `i` (1..=255).
    pub fn index(&self) -> u8 {
        self.index
    }

    /// `K_i = k_i·G`.
    pub fn public_key(&self) -> RistrettoPoint {
        &self.value * RISTRETTO_BASEPOINT_TABLE
    }

    /// Builds a share from its index and canonical 32-byte value (untrusted input).
    pub fn from_bytes(index: u8, value: &[u8]) -> Result<Self, OprfError> {
        if index == 0 {
            return Err(OprfError::ZeroIndex);
        }
        Ok(Self {
            index,
            value: canonical_scalar(value)?,
        })
    }

    /// The one accessor for the secret value bytes (zeroized when the caller drops them).
    pub fn expose_secret(&self) -> Zeroizing<[u8; KEY_LEN]> {
        Zeroizing::new(self.value.to_bytes())
    }
}

impl std::fmt::Debug for KeyShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyShare")
            .field("index", &self.index)
            .field("value", &"[REDACTED]")
            .finish()
    }
}

impl PartialEq for KeyShare {
    fn eq(&self, other: &Self) -> bool {
        (self.index.ct_eq(&other.index) & self.value.ct_eq(&other.value)).into()
    }
}
impl Eq for KeyShare {}

/// Public keys of a split: `K = k·G` and each holder's `(i, K_i)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKeys {
    /// `K = k·G`.
    pub key: RistrettoPoint,
    /// `(i, K_i = k_i·G)` in index order.
    pub holders: Vec<(u8, RistrettoPoint)>,
}

/// Shamir-splits `k` into `n` shares, any `threshold` of which determine it, over the scalar
/// field, with coefficients drawn uniformly from the OS RNG. Indices are `1..=n`.
pub fn split(
    key: &OprfKey,
    threshold: usize,
    n: usize,
) -> Result<(Vec<KeyShare>, PublicKeys), OprfError> {
    if threshold < 2 || threshold > n || n > 255 {
        return Err(OprfError::InvalidThreshold {
            threshold,
            holders: n,
        });
    }
    if key.0 == Scalar::ZERO {
        return Err(OprfError::ZeroKey);
    }
    let rng = SystemRandom::new();
    // f(X) = k + a_1 X + ... + a_{t-1} X^{t-1}; the coefficients are as secret as k.
    let mut coefficients = Zeroizing::new(Vec::with_capacity(threshold));
    coefficients.push(key.0);
    for _ in 1..threshold {
        coefficients.push(random_scalar(&rng)?);
    }
    let mut shares = Vec::with_capacity(n);
    for i in 1..=n {
        let index = u8::try_from(i).map_err(|_| OprfError::Internal("index"))?;
        let x = Scalar::from(index);
        // Horner's rule from the highest coefficient down.
        let mut y = Scalar::ZERO;
        for coefficient in coefficients.iter().rev() {
            y = y * x + coefficient;
        }
        shares.push(KeyShare { index, value: y });
    }
    let holders = shares.iter().map(|s| (s.index, s.public_key())).collect();
    Ok((
        shares,
        PublicKeys {
            key: key.public_key(),
            holders,
        },
    ))
}

/// What a holder answers for one object: `Y_i = k_i·P` and the proof that `log_G K_i =
/// log_P Y_i`. Public data (one share's worth of one object's OPRF output).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evaluation {
    /// `Y_i`.
    pub element: RistrettoPoint,
    /// The DLEQ proof.
    pub proof: Proof,
}

impl Evaluation {
    /// Parses an untrusted element and proof (as they would arrive from a holder).
    pub fn from_bytes(element: &[u8], proof: &[u8]) -> Result<Self, OprfError> {
        Ok(Self {
            element: element_from_bytes(element)?,
            proof: Proof::from_bytes(proof)?,
        })
    }
}

/// Holder side: evaluates its share on the object and proves it used the share behind `K_i`.
/// The proof is RFC 9497's over a single element (A = G, B = K_i, C = P, D = Y_i) under
/// [`OBJECT_CONTEXT`].
pub fn evaluate(share: &KeyShare, identity: &ObjectIdentity) -> Result<Evaluation, OprfError> {
    let public = share.public_key().compress().to_bytes();
    let (evaluation, _) = evaluate_registered(share, &public, identity)?;
    Ok(evaluation)
}

/// [`evaluate`] for a holder that knows its registered `K_i` (the encoding in its key
/// metadata, which the deposit checked against the share): no `k_i·G` per call. Also returns
/// the answer's wire encoding (`Y_i`, proof), computed once. With a `public` that is not this
/// share's `K_i` the proof verifies nowhere, so a wrong key here fails closed at the proxy.
pub fn evaluate_registered(
    share: &KeyShare,
    public: &[u8; ELEMENT_LEN],
    identity: &ObjectIdentity,
) -> Result<(Evaluation, EvaluationBytes), OprfError> {
    let p = identity.object_point()?;
    let element = share.value * p.point;
    let element_bytes = element.compress().to_bytes();
    let r = Zeroizing::new(random_scalar(&SystemRandom::new())?);
    let proof = dleq::prove_object(
        OBJECT_CONTEXT,
        &share.value,
        public,
        p.encoded(),
        Encoded {
            point: &element,
            bytes: &element_bytes,
        },
        &r,
    )?;
    Ok((
        Evaluation { element, proof },
        EvaluationBytes {
            element: element_bytes,
            proof: proof.to_bytes(),
        },
    ))
}

/// An [`Evaluation`] as sent: `Y_i` compressed and the proof `c ‖ s`. Public.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvaluationBytes {
    /// `Y_i`, compressed.
    pub element: [u8; ELEMENT_LEN],
    /// The proof.
    pub proof: [u8; PROOF_LEN],
}

/// The object's OPRF output `Y = k·P`: with the identity, the input keying material for its
/// KEK. Secret.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct ObjectSecret(RistrettoPoint);

impl std::fmt::Debug for ObjectSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ObjectSecret([REDACTED])")
    }
}

impl PartialEq for ObjectSecret {
    fn eq(&self, other: &Self) -> bool {
        self.0
            .compress()
            .as_bytes()
            .ct_eq(other.0.compress().as_bytes())
            .into()
    }
}
impl Eq for ObjectSecret {}

/// The object's key-encryption key: HKDF-SHA256 with `Y` as input keying material, a
/// versioned salt and the identity encoding `x` as info, so the KEK is bound to every field
/// of the identity even beyond what `P` already binds.
pub fn object_kek(secret: &ObjectSecret, identity: &ObjectIdentity) -> Result<Kek, OprfError> {
    struct Len;
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            KEY_LEN
        }
    }
    let ikm = Zeroizing::new(secret.0.compress().to_bytes());
    let info = identity.encode()?;
    let info_parts = [info.as_slice()];
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, KEK_SALT).extract(ikm.as_ref());
    let okm = prk
        .expand(&info_parts, Len)
        .map_err(|_| OprfError::Internal("hkdf expand"))?;
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    okm.fill(out.as_mut())
        .map_err(|_| OprfError::Internal("hkdf fill"))?;
    Ok(Kek::from_bytes(*out))
}

#[cfg(test)]
mod tests;
