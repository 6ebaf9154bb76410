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

/// Why a re-deal ([`redeal`]) is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedealError {
    /// The version's threshold is above 2: the customer's share and the departing holder's
    /// share are two points, and a polynomial of degree `threshold − 1 ≥ 2` needs more.
    #[error(
        "key version {version} has threshold {threshold}: re-dealing a share needs threshold − 1 = {others} holders' shares besides the customer's, and only the departing holder hands its share over. Use `tenant rotate` (a new version with the new trustee), `tenant rewrap --from {version}` and `tenant shred --version {version}` instead"
    )]
    ThresholdAboveTwo {
        /// The version.
        version: u32,
        /// Its threshold.
        threshold: u8,
        /// How many shares besides the customer's a re-deal would need.
        others: u8,
    },
    /// A legacy (`shamir-tmk-v1`) version: its holders' shares are bytes of a secret-shared
    /// master key checked by fingerprints, not OPRF shares with public keys.
    #[error(
        "key version {version} is a legacy (shamir-tmk-v1) key: rotate (`tenant rotate`), move its objects (`tenant rewrap --from {version}`) and shred it, then hand over the OPRF versions"
    )]
    Legacy {
        /// The version.
        version: u32,
    },
    /// The departing holder is not in the metadata, or the new name belongs to another holder.
    #[error("{0}")]
    Holders(String),
    /// No free x coordinate is left (255 is the largest).
    #[error("no free x coordinate is left for the new holder")]
    NoFreeX,
    /// A share does not check against its registered `K_i`, or the metadata is invalid.
    #[error(transparent)]
    Crypto(#[from] Error),
}

/// Re-deals the departing holder's share of a threshold-2 OPRF key to a new holder: the
/// customer's share `(x_c, k_c)` and the departing share `(x_d, k_d)` are two points of the
/// sharing polynomial `f` of degree 1, so they determine it, and the new holder gets
/// `f(x_new)` at a fresh `x_new` (one above every registered x). The tenant key `k = f(0)`,
/// `K`, the threshold and every other holder's share and `K_i` stay as they are, so every
/// object's `Y = k·P` (and key) is unchanged; only the departing holder's entry is replaced by
/// `{new_name, x_new, K_new = f(x_new)·G}`. Both shares are checked against their registered
/// `K_i` first; the result passes [`KeyMetadata::validate`]. Pure; nothing leaves this
/// function but the new metadata and the new share.
///
/// # Errors
/// [`RedealError`]: thresholds above 2, legacy keys, unknown or clashing holders, a share
/// that does not match its `K_i`.
pub fn redeal(
    metadata: &KeyMetadata,
    customer: &Share,
    departing: &Share,
    departing_name: &str,
    new_name: &str,
) -> Result<(KeyMetadata, Share), RedealError> {
    use curve25519_dalek::constants::RISTRETTO_BASEPOINT_TABLE;
    use curve25519_dalek::scalar::Scalar;
    use zeroize::Zeroize as _;

    if metadata.scheme != KeyScheme::Oprf {
        return Err(RedealError::Legacy {
            version: metadata.key_version,
        });
    }
    if metadata.threshold != 2 {
        return Err(RedealError::ThresholdAboveTwo {
            version: metadata.key_version,
            threshold: metadata.threshold,
            others: metadata.threshold.saturating_sub(1),
        });
    }
    metadata.validate()?;
    let leaving = metadata.holder(departing_name).ok_or_else(|| {
        RedealError::Holders(format!(
            "'{departing_name}' is not a holder of key version {}",
            metadata.key_version
        ))
    })?;
    if leaving.x != departing.x() {
        return Err(RedealError::Holders(format!(
            "the departing share has x = {} but '{departing_name}' is registered with x = {}",
            departing.x(),
            leaving.x
        )));
    }
    if customer.x() == departing.x() {
        return Err(RedealError::Holders(
            "the customer's share and the departing share are the same point".into(),
        ));
    }
    if new_name != departing_name && metadata.holder(new_name).is_some() {
        return Err(RedealError::Holders(format!(
            "'{new_name}' already holds a share of key version {}: pick another name for the new trustee",
            metadata.key_version
        )));
    }
    let c = key_share(metadata, customer)?;
    let d = key_share(metadata, departing)?;
    let x_new = metadata
        .holders
        .iter()
        .map(|h| h.x)
        .max()
        .and_then(|x| x.checked_add(1))
        .ok_or(RedealError::NoFreeX)?;
    let at = Scalar::from(x_new);
    let points = [c.index(), d.index()];
    let weight = |i: u8| {
        oprf::lagrange_at(at, i, points.iter().copied())
            .map_err(|_| Error::Internal("re-deal interpolation"))
    };
    let mut kc = scalar_of(&c)?;
    let mut kd = scalar_of(&d)?;
    let mut value = weight(c.index())? * kc + weight(d.index())? * kd;
    kc.zeroize();
    kd.zeroize();
    let public = &value * RISTRETTO_BASEPOINT_TABLE;
    let share = Share::new(x_new, ShareValue::from_bytes(value.to_bytes()));
    value.zeroize();
    let mut next = metadata.clone();
    next.holders.retain(|h| h.name != departing_name);
    next.holders.push(Holder {
        name: new_name.to_owned(),
        x: x_new,
        fingerprint: String::new(),
        public_key: encode_point(&public),
    });
    next.validate()?;
    key_share(&next, &share)?;
    Ok((next, share))
}

/// The scalar of a checked key share (its bytes are canonical by construction).
fn scalar_of(share: &KeyShare) -> Result<curve25519_dalek::scalar::Scalar, Error> {
    let bytes = share.expose_secret();
    Option::from(curve25519_dalek::scalar::Scalar::from_canonical_bytes(
        *bytes,
    ))
    .ok_or(Error::Internal("key share not canonical"))
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

    fn identity(version: u32) -> ObjectIdentity {
        ObjectIdentity {
            tenant: "acme".into(),
            key_version: version,
            bucket: "b".into(),
            key: "k".into(),
            id: ObjectId([9; 32]),
        }
    }

    /// `Y` of `identity` from the customer's share (local) and one holder's proven answer.
    fn y_with(
        metadata: &KeyMetadata,
        customer: &Share,
        holder: &Share,
        identity: &ObjectIdentity,
    ) -> oprf::ObjectSecret {
        let c = key_share(metadata, customer).unwrap();
        let h = key_share(metadata, holder).unwrap();
        let local = oprf::evaluate_local(&c, identity).unwrap();
        let remote = oprf::evaluate(&h, identity).unwrap();
        let k = holder_key(metadata, holder.x()).unwrap();
        oprf::combine(identity, &[local], &[(holder.x(), k, remote)], 2).unwrap()
    }

    #[test]
    fn a_redealt_share_combines_with_the_customers_to_the_same_object_secret() {
        let (metadata, shares) =
            split(&key(), 2, &["customer", "trustee"], SplitOptions::default()).unwrap();
        let object = identity(1);
        let before = y_with(&metadata, &shares[0], &shares[1], &object);
        let (next, share) =
            redeal(&metadata, &shares[0], &shares[1], "trustee", "trustee-b").unwrap();
        next.validate().unwrap();
        assert_eq!(share.x(), 3, "a fresh x above every registered one");
        assert_eq!(next.public_key, metadata.public_key, "K is unchanged");
        assert_eq!(next.threshold, 2);
        assert!(next.holder("trustee").is_none());
        assert_eq!(next.holder("customer"), metadata.holder("customer"));
        assert_eq!(next.holder("trustee-b").unwrap().x, 3);
        let after = y_with(&next, &shares[0], &share, &object);
        assert_eq!(before, after, "every object's key stays the same");
        // The departing share no longer belongs to the new metadata.
        assert!(key_share(&next, &shares[1]).is_err());
    }

    #[test]
    fn a_redeal_with_three_holders_keeps_the_third_and_its_key() {
        let (metadata, shares) = split(
            &key(),
            2,
            &["customer", "trustee-a", "trustee-b"],
            SplitOptions {
                strict: false,
                allow_trustees_alone: true,
            },
        )
        .unwrap();
        let (next, share) =
            redeal(&metadata, &shares[0], &shares[1], "trustee-a", "trustee-c").unwrap();
        assert_eq!(share.x(), 4);
        assert_eq!(next.holder("trustee-b"), metadata.holder("trustee-b"));
        assert!(next.allow_trustees_alone);
        let object = identity(1);
        assert_eq!(
            y_with(&metadata, &shares[0], &shares[2], &object),
            y_with(&next, &shares[0], &share, &object)
        );
        // The new trustee and the untouched third trustee combine to the same Y too.
        let b = key_share(&next, &shares[2]).unwrap();
        let c = key_share(&next, &share).unwrap();
        let eb = oprf::evaluate(&b, &object).unwrap();
        let ec = oprf::evaluate(&c, &object).unwrap();
        let y = oprf::verify_and_combine(
            &object,
            &[
                (3, holder_key(&next, 3).unwrap(), eb),
                (4, holder_key(&next, 4).unwrap(), ec),
            ],
            2,
        )
        .unwrap();
        assert_eq!(y, y_with(&metadata, &shares[0], &shares[1], &object));
    }

    #[test]
    fn a_redeal_refuses_a_threshold_above_two_naming_the_alternative() {
        let (metadata, shares) = split(
            &key(),
            3,
            &["customer", "trustee-a", "trustee-b"],
            SplitOptions::default(),
        )
        .unwrap();
        let error = redeal(&metadata, &shares[0], &shares[1], "trustee-a", "new").unwrap_err();
        assert!(matches!(
            error,
            RedealError::ThresholdAboveTwo { threshold: 3, .. }
        ));
        let text = error.to_string();
        assert!(
            text.contains("tenant rotate") && text.contains("rewrap") && text.contains("shred")
        );
    }

    #[test]
    fn a_redeal_refuses_a_share_that_does_not_match_its_holder() {
        let names = ["customer", "trustee"];
        let (metadata, shares) = split(&key(), 2, &names, SplitOptions::default()).unwrap();
        let (_, other) = split(&key(), 2, &names, SplitOptions::default()).unwrap();
        assert!(matches!(
            redeal(&metadata, &shares[0], &other[1], "trustee", "new"),
            Err(RedealError::Crypto(Error::ShareMismatch { holder })) if holder == "trustee"
        ));
        assert!(matches!(
            redeal(&metadata, &other[0], &shares[1], "trustee", "new"),
            Err(RedealError::Crypto(Error::ShareMismatch { holder })) if holder == "customer"
        ));
        // A departing share under the wrong name, or a new name that is taken.
        assert!(matches!(
            redeal(&metadata, &shares[0], &shares[1], "nobody", "new"),
            Err(RedealError::Holders(_))
        ));
        assert!(matches!(
            redeal(&metadata, &shares[0], &shares[1], "trustee", "customer"),
            Err(RedealError::Holders(_))
        ));
    }
}
