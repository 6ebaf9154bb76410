//! The public side of an OPRF tenant key ([`KeyScheme::Oprf`]): the ceremony's split into
//! metadata and shares, and the checks every party runs on that metadata and on shares.
//!
//! A share of an OPRF key is a canonical ristretto255 scalar; it travels in the same
//! `treuhand-share-v1:` envelope and the same 32-byte SSE-C header as a legacy share, so
//! deposits, share files and clients keep their form. What changes is how it is checked:
//! against the holder's public key `K_i = k_i·G` instead of a fingerprint.

use super::metadata::{Holder, KeyMetadata, KeyScheme};
pub use super::metadata::{encode_point, holder_key, public_keys};
use super::oprf::{self, KeyShare, OprfKey};
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
