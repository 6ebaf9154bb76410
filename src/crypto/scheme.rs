//! The public side of an OPRF tenant key ([`KeyScheme::Oprf`]): the ceremony's split into
//! metadata and shares, and the checks every party runs on that metadata and on shares.
//!
//! A share of an OPRF key is a canonical ristretto255 scalar; it travels in the same
//! `treuhand-share-v1:` envelope and the same 32-byte SSE-C header as a legacy share, so
//! deposits, share files and clients keep their form. What changes is how it is checked:
//! against the holder's public key `K_i = k_i·G` instead of a fingerprint.

use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::VartimeMultiscalarMul;

use super::oprf::{self, KeyShare, OprfKey, PublicKeys};
use super::shamir::{Holder, KeyMetadata, KeyScheme};
use super::{Error, KeyId};
use crate::secret::{Share, ShareValue};

/// What the ceremony records besides the split.
#[derive(Debug, Clone, Copy, Default)]
pub struct SplitOptions {
    /// See [`KeyMetadata::strict`].
    pub strict: bool,
    /// See [`KeyMetadata::allow_trustees_alone`].
    pub allow_trustees_alone: bool,
}

/// Generates a fresh tenant OPRF key, splits it among `holder_names` (holder i, 0-based, gets
/// x = i + 1) and returns the public metadata and the shares in holder order. The key itself
/// is dropped (and zeroized) before this returns: nobody holds it afterwards.
///
/// # Errors
/// [`Error::InvalidThreshold`], [`Error::InvalidMetadata`], [`Error::InvalidTenant`],
/// [`Error::Random`].
pub fn split(
    key: &KeyId,
    threshold: u8,
    holder_names: &[&str],
    options: SplitOptions,
) -> Result<(KeyMetadata, Vec<Share>), Error> {
    let tenant_key = OprfKey::random().map_err(oprf_error)?;
    let (shares, public) =
        oprf::split(&tenant_key, usize::from(threshold), holder_names.len()).map_err(oprf_error)?;
    drop(tenant_key);
    let mut holders = Vec::with_capacity(shares.len());
    let mut out = Vec::with_capacity(shares.len());
    for ((name, share), (_, public_key)) in holder_names.iter().zip(&shares).zip(&public.holders) {
        holders.push(Holder {
            name: (*name).to_owned(),
            x: share.index(),
            fingerprint: String::new(),
            public_key: encode_point(public_key),
        });
        out.push(Share::new(
            share.index(),
            ShareValue::from_bytes(*share.expose_secret()),
        ));
    }
    let metadata = KeyMetadata {
        tenant: key.tenant.clone(),
        key_version: key.version,
        threshold,
        holders,
        commitment: String::new(),
        scheme: KeyScheme::Oprf,
        public_key: encode_point(&public.key),
        strict: options.strict,
        allow_trustees_alone: options.allow_trustees_alone,
    };
    metadata.validate()?;
    Ok((metadata, out))
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

/// Turns a share (from an envelope, a store or an SSE-C header) into an OPRF key share and
/// checks it against its holder's registered `K_i`.
///
/// # Errors
/// [`Error::UnknownHolder`]; [`Error::ShareEncoding`] for a value that is not a canonical
/// scalar; [`Error::ShareMismatch`] naming the holder when `k_i·G ≠ K_i`.
pub fn key_share(metadata: &KeyMetadata, share: &Share) -> Result<KeyShare, Error> {
    let holder = metadata
        .holders
        .iter()
        .find(|h| h.x == share.x())
        .ok_or(Error::UnknownHolder { x: share.x() })?;
    let registered = holder_key(metadata, share.x())?;
    let key_share = KeyShare::from_bytes(share.x(), share.expose_secret())
        .map_err(|_| Error::ShareEncoding("an OPRF share must be a canonical scalar"))?;
    // Public keys: comparing them in variable time reveals nothing about the share.
    if key_share.public_key() != registered {
        return Err(Error::ShareMismatch {
            holder: holder.name.clone(),
        });
    }
    Ok(key_share)
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

fn oprf_error(e: oprf::OprfError) -> Error {
    match e {
        oprf::OprfError::InvalidThreshold { threshold, holders } => {
            Error::InvalidThreshold { threshold, holders }
        }
        oprf::OprfError::Random => Error::Random,
        _ => Error::Internal("oprf split"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::oprf::{ObjectId, ObjectIdentity};

    fn key() -> KeyId {
        KeyId::new("acme", 1).unwrap()
    }

    #[test]
    fn a_split_validates_and_its_shares_check_against_their_holders() {
        let (metadata, shares) = split(
            &key(),
            2,
            &["customer", "trustee-a", "trustee-b"],
            SplitOptions::default(),
        )
        .unwrap();
        metadata.validate().unwrap();
        assert_eq!(metadata.scheme, KeyScheme::Oprf);
        for share in &shares {
            key_share(&metadata, share).unwrap();
        }
        // A share presented for the wrong holder is named.
        let swapped = Share::new(2, ShareValue::from_bytes(*shares[0].expose_secret()));
        assert!(matches!(
            key_share(&metadata, &swapped),
            Err(Error::ShareMismatch { holder }) if holder == "trustee-a"
        ));
        // Non-canonical bytes are refused as an encoding error, not a mismatch.
        let bad = Share::new(1, ShareValue::from_bytes([0xff; 32]));
        assert!(matches!(
            key_share(&metadata, &bad),
            Err(Error::ShareEncoding(_))
        ));
    }

    #[test]
    fn metadata_with_a_holder_key_from_another_split_is_refused() {
        let names = ["customer", "trustee-a", "trustee-b"];
        let (mut a, _) = split(&key(), 2, &names, SplitOptions::default()).unwrap();
        let (b, _) = split(&key(), 2, &names, SplitOptions::default()).unwrap();
        a.holders[2].public_key = b.holders[2].public_key.clone();
        assert!(matches!(a.validate(), Err(Error::InvalidMetadata(_))));
        let (mut c, _) = split(&key(), 2, &names, SplitOptions::default()).unwrap();
        c.public_key = b.public_key.clone();
        assert!(matches!(c.validate(), Err(Error::InvalidMetadata(_))));
    }

    #[test]
    fn shares_from_a_split_combine_to_the_unsplit_evaluation() {
        let (metadata, shares) = split(
            &key(),
            2,
            &["customer", "trustee-a"],
            SplitOptions::default(),
        )
        .unwrap();
        let identity = ObjectIdentity {
            tenant: "acme".into(),
            key_version: 1,
            bucket: "b".into(),
            key: "k".into(),
            id: ObjectId([7; 32]),
        };
        let customer = key_share(&metadata, &shares[0]).unwrap();
        let trustee = key_share(&metadata, &shares[1]).unwrap();
        let local = oprf::evaluate_local(&customer, &identity).unwrap();
        let remote = oprf::evaluate(&trustee, &identity).unwrap();
        let k2 = holder_key(&metadata, 2).unwrap();
        let combined = oprf::combine(&identity, &[local], &[(2, k2, remote)], 2).unwrap();
        // Both holders answering remotely gives the same Y.
        let local_remote = oprf::evaluate(&customer, &identity).unwrap();
        let k1 = holder_key(&metadata, 1).unwrap();
        let both =
            oprf::verify_and_combine(&identity, &[(1, k1, local_remote), (2, k2, remote)], 2)
                .unwrap();
        assert_eq!(combined, both);
        // A wrong threshold (1 answer for a 2-of-2 key) is refused.
        let lone = oprf::evaluate_local(&customer, &identity).unwrap();
        assert!(oprf::combine(&identity, &[lone], &[], 2).is_err());
    }
}
