//! Public metadata of a tenant key version ([`KeyMetadata`]), for both key schemes, and its
//! checks: holder names and x coordinates, the legacy fingerprints and commitment, and for OPRF
//! keys the consistency of `K` and every `K_i`. Public data only; the files that split keys
//! (`shamir` for legacy keys, `scheme` for OPRF keys) build it.

use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::VartimeMultiscalarMul;
use serde::{Deserialize, Serialize};

use super::Error;
use super::envelope::{self, KeyCommitment, KeyId};
use super::oprf::{self, PublicKeys};

/// Length of a public share fingerprint.
pub const FINGERPRINT_LEN: usize = 16;

/// One share holder as registered at enrollment. Public.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// Human-readable holder name, e.g. `customer` or `trustee-a`.
    pub name: String,
    /// The holder's fixed x coordinate (1..=255).
    pub x: u8,
    /// Hex of the truncated SHA-256 fingerprint of this holder's share
    /// ([`KeyScheme::ShamirTmk`] only; empty for OPRF keys).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fingerprint: String,
    /// Hex of the holder's public key `K_i = k_i·G` ([`KeyScheme::Oprf`] only; empty for
    /// legacy keys).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub public_key: String,
}

/// Which key hierarchy a tenant key version uses (docs/oprf.md, docs/format.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum KeyScheme {
    /// Format v1/v2 objects: a tenant master key that the proxy rebuilt from shares and
    /// committed to. Read-only legacy: nothing new is created with it, and the lifecycle's
    /// rewrap moves its objects to an OPRF version.
    #[default]
    #[serde(rename = "shamir-tmk-v1")]
    ShamirTmk,
    /// Format v3 objects: a threshold OPRF over ristretto255. The tenant key is never
    /// reassembled; each holder evaluates its share per object ([`crate::crypto::oprf`]).
    #[serde(rename = "oprf-ristretto255-v1")]
    Oprf,
}

/// Public metadata of one tenant key: enough to validate shares and the recovered key, and
/// nothing that helps recover it. Deposited with trustees and registered with proxies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyMetadata {
    /// Tenant id.
    pub tenant: String,
    /// Key version.
    pub key_version: u32,
    /// Shares needed to recover the key (k).
    pub threshold: u8,
    /// All n holders, in x order.
    pub holders: Vec<Holder>,
    /// Hex of the key commitment ([`KeyScheme::ShamirTmk`] only; empty for OPRF keys).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub commitment: String,
    /// The key hierarchy. Absent in files written before format v3: those are legacy keys.
    #[serde(default)]
    pub scheme: KeyScheme,
    /// Hex of the tenant public key `K = k·G` ([`KeyScheme::Oprf`] only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub public_key: String,
    /// Strict tenant: every request must carry the customer's own SigV4 signature, checked
    /// by a holder that knows the S3 secret; the proxy never knows it.
    #[serde(default)]
    pub strict: bool,
    /// The customer explicitly allowed a threshold that the trustees reach without the
    /// customer's share (`tenant create --allow-trustees-alone`). Recorded in every holder's
    /// audit log at enrollment.
    #[serde(default)]
    pub allow_trustees_alone: bool,
}

impl KeyMetadata {
    /// The tenant key this metadata describes.
    ///
    /// # Errors
    /// [`Error::InvalidTenant`].
    pub fn key_id(&self) -> Result<KeyId, Error> {
        KeyId::new(&self.tenant, self.key_version)
    }

    /// The holder registered under `name`.
    pub fn holder(&self, name: &str) -> Option<&Holder> {
        self.holders.iter().find(|h| h.name == name)
    }

    /// Checks internal consistency: threshold bounds, unique non-zero x, unique names,
    /// well-formed fingerprints and commitment.
    ///
    /// # Errors
    /// [`Error::InvalidThreshold`] or [`Error::InvalidMetadata`] naming the problem.
    pub fn validate(&self) -> Result<(), Error> {
        self.key_id()?;
        check_threshold(usize::from(self.threshold), self.holders.len())?;
        for (i, holder) in self.holders.iter().enumerate() {
            if holder.x == 0 {
                return Err(Error::InvalidMetadata(
                    "holder x coordinate 0 is not allowed",
                ));
            }
            if holder.name.is_empty() || holder.name.len() > 64 {
                return Err(Error::InvalidMetadata("holder names must be 1-64 bytes"));
            }
            if self.holders[..i]
                .iter()
                .any(|h| h.x == holder.x || h.name == holder.name)
            {
                return Err(Error::InvalidMetadata(
                    "duplicate holder name or x coordinate",
                ));
            }
            if self.scheme == KeyScheme::ShamirTmk {
                decode_hex::<FINGERPRINT_LEN>(&holder.fingerprint).ok_or(
                    Error::InvalidMetadata("holder fingerprint must be 32 hex digits"),
                )?;
            }
        }
        match self.scheme {
            KeyScheme::ShamirTmk => {
                self.commitment()?;
            }
            // Decodes K and every K_i and checks that they lie on one polynomial of the
            // registered degree.
            KeyScheme::Oprf => {
                public_keys(self)?;
            }
        }
        Ok(())
    }

    /// The customer's holder is needed whenever the trustees alone are fewer than the
    /// threshold. True when the trustees (every holder but `customer`) could reach the
    /// threshold without it.
    pub fn trustees_alone_reach_threshold(&self, customer: &str) -> bool {
        let others = self.holders.iter().filter(|h| h.name != customer).count();
        others >= usize::from(self.threshold)
    }

    /// The decoded key commitment.
    ///
    /// # Errors
    /// [`Error::InvalidMetadata`] if it is not 64 hex digits.
    pub fn commitment(&self) -> Result<KeyCommitment, Error> {
        decode_hex::<{ envelope::COMMITMENT_LEN }>(&self.commitment)
            .map(KeyCommitment)
            .ok_or(Error::InvalidMetadata("commitment must be 64 hex digits"))
    }
}

pub(crate) fn decode_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let bytes = hex::decode(text).ok()?;
    bytes.try_into().ok()
}

pub(crate) fn check_threshold(k: usize, n: usize) -> Result<(), Error> {
    if k < 2 || k > n || n > 255 {
        return Err(Error::InvalidThreshold {
            threshold: k,
            holders: n,
        });
    }
    Ok(())
}

/// Decodes `K` and every `K_i` of OPRF metadata and checks that they are consistent: the
/// first `threshold` holders' keys, interpolated in the exponent, give `K` at 0 and every
/// other holder's `K_j` at `x_j`. So the registered keys describe one sharing of one key with
/// the registered threshold, and a holder cannot be registered with a key from another split.
///
/// # Errors
/// [`Error::InvalidMetadata`] naming the problem.
pub fn public_keys(metadata: &KeyMetadata) -> Result<PublicKeys, Error> {
    if metadata.scheme != KeyScheme::Oprf {
        return Err(Error::InvalidMetadata("not an OPRF tenant key"));
    }
    let key = decode_point(&metadata.public_key).ok_or(Error::InvalidMetadata(
        "public_key must be a 64-hex-digit ristretto255 element",
    ))?;
    let mut holders = Vec::with_capacity(metadata.holders.len());
    for holder in &metadata.holders {
        let point = decode_point(&holder.public_key).ok_or(Error::InvalidMetadata(
            "holder public_key must be a 64-hex-digit ristretto255 element",
        ))?;
        holders.push((holder.x, point));
    }
    let t = usize::from(metadata.threshold);
    if t < 2 || t > holders.len() {
        return Err(Error::InvalidThreshold {
            threshold: t,
            holders: holders.len(),
        });
    }
    let basis = &holders[..t];
    let at = |x: Scalar| -> Result<RistrettoPoint, Error> {
        let mut weights = Vec::with_capacity(t);
        for (i, _) in basis {
            weights.push(
                oprf::lagrange_at(x, *i, basis.iter().map(|(j, _)| *j))
                    .map_err(|_| Error::InvalidMetadata("duplicate holder x coordinate"))?,
            );
        }
        Ok(RistrettoPoint::vartime_multiscalar_mul(
            weights,
            basis.iter().map(|(_, p)| p),
        ))
    };
    if at(Scalar::ZERO)? != key {
        return Err(Error::InvalidMetadata(
            "the holders' public keys do not interpolate to the tenant public key",
        ));
    }
    for (x, point) in &holders[t..] {
        if at(Scalar::from(*x))? != *point {
            return Err(Error::InvalidMetadata(
                "a holder's public key is not on the registered sharing polynomial",
            ));
        }
    }
    Ok(PublicKeys { key, holders })
}

/// The registered public key `K_i` of the holder with x coordinate `x`.
///
/// # Errors
/// [`Error::UnknownHolder`], [`Error::InvalidMetadata`].
pub fn holder_key(metadata: &KeyMetadata, x: u8) -> Result<RistrettoPoint, Error> {
    let holder = metadata
        .holders
        .iter()
        .find(|h| h.x == x)
        .ok_or(Error::UnknownHolder { x })?;
    decode_point(&holder.public_key).ok_or(Error::InvalidMetadata(
        "holder public_key must be a ristretto255 element",
    ))
}

/// Lower-case hex of a compressed element.
pub fn encode_point(point: &RistrettoPoint) -> String {
    hex::encode(point.compress().as_bytes())
}

fn decode_point(text: &str) -> Option<RistrettoPoint> {
    let bytes = hex::decode(text).ok()?;
    let compressed = CompressedRistretto::from_slice(&bytes).ok()?;
    oprf::element_from_bytes(compressed.as_bytes()).ok()
}
