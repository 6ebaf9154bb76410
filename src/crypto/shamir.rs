//! Shamir secret sharing of the tenant master key: the only file that names `vsss-rs`.
//!
//! Plain Shamir has no integrity: a duplicate, tampered or swapped share silently yields a
//! wrong secret (and an `x = 0` share decides the output outright). treuhand therefore wraps
//! the engine with strict validation:
//!
//! - each holder has a fixed, registered x coordinate (1..=n, in holder order);
//! - shares must come from registered holders, without duplicates, with exact lengths;
//! - each share is checked against its public per-holder fingerprint first, so a failed combine
//!   names the holder whose share is wrong;
//! - the recovered key is checked against the key commitment before anyone can use it.
//!
//! Two encodings exist: the `treuhand-share-v1:` text envelope for people and files (versioned,
//! checksummed), and the raw 32-byte y value that travels in S3 SSE-C headers.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::digest;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::Error;
use super::envelope::{self, KeyId};
pub use super::metadata::{FINGERPRINT_LEN, Holder, KeyMetadata, KeyScheme};
use super::metadata::{check_threshold, decode_hex};
use crate::secret::{KEY_LEN, Share, ShareValue, Tmk};

/// Prefix of the text envelope; the `v1` is the envelope version.
pub const ENVELOPE_PREFIX: &str = "treuhand-share-v1:";
const FINGERPRINT_LABEL: &[u8] = b"treuhand share fingerprint v1";
const CHECKSUM_LEN: usize = 4;

/// The public fingerprint of a share: SHA-256 over a label, the key id and x ‖ y, truncated.
/// y is 32 uniformly random bytes, so the fingerprint reveals nothing usable about it.
pub fn fingerprint(key: &KeyId, share: &Share) -> [u8; FINGERPRINT_LEN] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(FINGERPRINT_LABEL);
    ctx.update(&(key.tenant.len() as u32).to_be_bytes());
    ctx.update(key.tenant.as_bytes());
    ctx.update(&key.version.to_be_bytes());
    ctx.update(&[share.x()]);
    ctx.update(share.expose_secret());
    let digest = ctx.finish();
    let mut out = [0u8; FINGERPRINT_LEN];
    out.copy_from_slice(&digest.as_ref()[..FINGERPRINT_LEN]);
    out
}

/// Feeds vsss-rs from ring's system RNG. vsss-rs wants an infallible RNG; ring's can fail, so
/// a failure is remembered and turned into [`Error::Random`] after the split, whose output is
/// then discarded.
struct RingRng {
    rng: ring::rand::SystemRandom,
    failed: bool,
}

impl rand_core::TryRng for RingRng {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        use ring::rand::SecureRandom as _;
        if self.rng.fill(dst).is_err() {
            self.failed = true;
        }
        Ok(())
    }
}

impl rand_core::TryCryptoRng for RingRng {}

/// Splits a tenant master key into `holder_names.len()` shares with threshold `threshold`.
/// Holder i (0-based, in the given order) gets x = i + 1. Returns the public metadata (with
/// fingerprints and commitment) and the shares in holder order.
///
/// # Errors
/// [`Error::InvalidThreshold`], [`Error::InvalidMetadata`] for bad holder names,
/// [`Error::InvalidTenant`], [`Error::Random`].
pub fn split(
    tmk: &Tmk,
    key: &KeyId,
    threshold: u8,
    holder_names: &[&str],
) -> Result<(KeyMetadata, Vec<Share>), Error> {
    let n = holder_names.len();
    check_threshold(usize::from(threshold), n)?;
    let mut rng = RingRng {
        rng: ring::rand::SystemRandom::new(),
        failed: false,
    };
    let ids = (1..=n).map(|x| vsss_rs::IdentifierGf256(vsss_rs::Gf256(x as u8)));
    let raw = vsss_rs::Gf256::split_bytes_with_participant_ids_iter(
        usize::from(threshold),
        n,
        tmk.expose_secret(),
        &mut rng,
        ids,
    )
    .map_err(|_| Error::Internal("shamir split"));
    // Wrap at once so every raw share is zeroized on every path.
    let raw: Vec<Zeroizing<Vec<u8>>> = raw?.into_iter().map(Zeroizing::new).collect();
    if rng.failed {
        return Err(Error::Random);
    }
    let mut shares = Vec::with_capacity(n);
    let mut holders = Vec::with_capacity(n);
    for (name, bytes) in holder_names.iter().zip(&raw) {
        let (x, y) = bytes.split_first().ok_or(Error::Internal("empty share"))?;
        let value = ShareValue::from_slice(y).ok_or(Error::Internal("share length"))?;
        let share = Share::new(*x, value);
        holders.push(Holder {
            name: (*name).to_owned(),
            x: *x,
            fingerprint: hex::encode(fingerprint(key, &share)),
            public_key: String::new(),
        });
        shares.push(share);
    }
    let metadata = KeyMetadata {
        tenant: key.tenant.clone(),
        key_version: key.version,
        threshold,
        holders,
        commitment: hex::encode(envelope::commit(tmk, key)?.0),
        scheme: KeyScheme::ShamirTmk,
        public_key: String::new(),
        strict: false,
        allow_trustees_alone: false,
    };
    metadata.validate()?;
    Ok((metadata, shares))
}

/// Checks one share against the holder it claims to come from.
///
/// # Errors
/// [`Error::UnknownHolder`] if no holder has its x; [`Error::ShareMismatch`] naming the holder
/// if the fingerprint differs.
pub fn check_share(metadata: &KeyMetadata, share: &Share) -> Result<(), Error> {
    let key = metadata.key_id()?;
    let holder = metadata
        .holders
        .iter()
        .find(|h| h.x == share.x())
        .ok_or(Error::UnknownHolder { x: share.x() })?;
    let expected = decode_hex::<FINGERPRINT_LEN>(&holder.fingerprint).ok_or(
        Error::InvalidMetadata("holder fingerprint must be 32 hex digits"),
    )?;
    if bool::from(fingerprint(&key, share).ct_eq(&expected)) {
        Ok(())
    } else {
        Err(Error::ShareMismatch {
            holder: holder.name.clone(),
        })
    }
}

/// Recovers the tenant master key from at least `threshold` shares, with strict validation and
/// the commitment check. Never returns a wrong key.
///
/// # Errors
/// [`Error::NotEnoughShares`], [`Error::DuplicateShare`], [`Error::UnknownHolder`],
/// [`Error::ShareMismatch`] (naming the holder), [`Error::CommitmentMismatch`].
pub fn combine(metadata: &KeyMetadata, shares: &[&Share]) -> Result<Tmk, Error> {
    metadata.validate()?;
    let key = metadata.key_id()?;
    let need = usize::from(metadata.threshold);
    for (i, share) in shares.iter().enumerate() {
        if shares[..i].iter().any(|s| s.x() == share.x()) {
            return Err(Error::DuplicateShare { x: share.x() });
        }
        check_share(metadata, share)?;
    }
    if shares.len() < need {
        return Err(Error::NotEnoughShares {
            have: shares.len(),
            need,
        });
    }
    // Exactly k points determine the polynomial; using the first k keeps the work constant.
    let raw: Vec<Vec<u8>> = shares[..need]
        .iter()
        .map(|s| {
            let mut v = Vec::with_capacity(KEY_LEN + 1);
            v.push(s.x());
            v.extend_from_slice(s.expose_secret());
            v
        })
        .collect();
    let raw = Zeroizing::new(raw);
    let secret = Zeroizing::new(
        vsss_rs::Gf256::combine_bytes(raw.as_slice())
            .map_err(|_| Error::Internal("shamir combine"))?,
    );
    let tmk = Tmk::from_slice(&secret).ok_or(Error::Internal("combined length"))?;
    envelope::verify_commitment(&tmk, &key, &metadata.commitment()?)?;
    Ok(tmk)
}

/// A share together with the key it belongs to: what the text envelope carries.
#[derive(Debug)]
pub struct ShareEnvelope {
    /// Which tenant key this share is for.
    pub key: KeyId,
    /// The share itself.
    pub share: Share,
}

impl ShareEnvelope {
    /// Encodes as `treuhand-share-v1:` + base64url(x ‖ version ‖ tenant_len ‖ tenant ‖ y ‖
    /// checksum), where the checksum is the first 4 bytes of SHA-256 over prefix and payload.
    pub fn encode(&self) -> Zeroizing<String> {
        let mut payload = Zeroizing::new(Vec::with_capacity(64));
        payload.push(self.share.x());
        payload.extend_from_slice(&self.key.version.to_be_bytes());
        payload.push(self.key.tenant.len() as u8);
        payload.extend_from_slice(self.key.tenant.as_bytes());
        payload.extend_from_slice(self.share.expose_secret());
        let sum = checksum(&payload);
        payload.extend_from_slice(&sum);
        let mut out = Zeroizing::new(String::from(ENVELOPE_PREFIX));
        URL_SAFE_NO_PAD.encode_string(payload.as_slice(), &mut out);
        out
    }

    /// Parses a text envelope. Leading and trailing whitespace is ignored.
    ///
    /// # Errors
    /// [`Error::ShareEncoding`] with a message saying what is wrong (prefix, version,
    /// alphabet, length or checksum), or [`Error::InvalidTenant`].
    pub fn parse(text: &str) -> Result<Self, Error> {
        let text = text.trim();
        let Some(body) = text.strip_prefix(ENVELOPE_PREFIX) else {
            if text.starts_with("treuhand-share-v") {
                return Err(Error::ShareEncoding(
                    "unsupported share envelope version (expected v1)",
                ));
            }
            return Err(Error::ShareEncoding(
                "not a treuhand share: it must start with treuhand-share-v1:",
            ));
        };
        let payload = Zeroizing::new(URL_SAFE_NO_PAD.decode(body).map_err(|_| {
            Error::ShareEncoding(
                "share contains characters outside base64url; was it copied completely?",
            )
        })?);
        let min = 1 + 4 + 1 + 1 + KEY_LEN + CHECKSUM_LEN;
        if payload.len() < min {
            return Err(Error::ShareEncoding(
                "share is too short; was it copied completely?",
            ));
        }
        let (data, sum) = payload.split_at(payload.len() - CHECKSUM_LEN);
        if !bool::from(checksum(data).ct_eq(sum)) {
            return Err(Error::ShareEncoding(
                "share checksum does not match: the text has a typo or was altered",
            ));
        }
        let x = data[0];
        let version = u32::from_be_bytes([data[1], data[2], data[3], data[4]]);
        let tenant_len = usize::from(data[5]);
        if data.len() != 6 + tenant_len + KEY_LEN {
            return Err(Error::ShareEncoding(
                "share length does not match its tenant field",
            ));
        }
        let tenant =
            std::str::from_utf8(&data[6..6 + tenant_len]).map_err(|_| Error::InvalidTenant)?;
        if x == 0 {
            return Err(Error::ShareEncoding(
                "share has x coordinate 0, which is never valid",
            ));
        }
        let value = ShareValue::from_slice(&data[6 + tenant_len..])
            .ok_or(Error::Internal("share length"))?;
        Ok(Self {
            key: KeyId::new(tenant, version)?,
            share: Share::new(x, value),
        })
    }
}

pub(crate) fn checksum(data: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(ENVELOPE_PREFIX.as_bytes());
    ctx.update(data);
    let digest = ctx.finish();
    let mut out = [0u8; CHECKSUM_LEN];
    out.copy_from_slice(&digest.as_ref()[..CHECKSUM_LEN]);
    out
}

/// Builds a share from the raw 32-byte y value of an SSE-C header, for the named holder.
///
/// # Errors
/// [`Error::ShareEncoding`] if the length is not 32; [`Error::InvalidMetadata`] if the holder is
/// not registered.
pub fn share_from_raw(metadata: &KeyMetadata, holder: &str, raw: &[u8]) -> Result<Share, Error> {
    let holder = metadata
        .holder(holder)
        .ok_or(Error::InvalidMetadata("holder is not registered"))?;
    let value = ShareValue::from_slice(raw)
        .ok_or(Error::ShareEncoding("a raw share must be exactly 32 bytes"))?;
    Ok(Share::new(holder.x, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::envelope::generate_tmk;
    use proptest::prelude::*;

    fn setup(k: u8, n: usize) -> (Tmk, KeyMetadata, Vec<Share>) {
        let tmk = generate_tmk().unwrap();
        let names: Vec<String> = (0..n).map(|i| format!("holder-{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let (meta, shares) = split(&tmk, &KeyId::new("acme", 1).unwrap(), k, &refs).unwrap();
        (tmk, meta, shares)
    }

    fn copy(share: &Share) -> Share {
        Share::new(share.x(), ShareValue::from_bytes(*share.expose_secret()))
    }

    #[test]
    fn split_rejects_bad_thresholds() {
        let tmk = generate_tmk().unwrap();
        let id = KeyId::new("acme", 1).unwrap();
        assert!(matches!(
            split(&tmk, &id, 1, &["a", "b"]),
            Err(Error::InvalidThreshold { .. })
        ));
        assert!(matches!(
            split(&tmk, &id, 3, &["a", "b"]),
            Err(Error::InvalidThreshold { .. })
        ));
        let many: Vec<String> = (0..256).map(|i| i.to_string()).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(split(&tmk, &id, 2, &refs).is_err());
        assert!(split(&tmk, &id, 2, &["a", "a"]).is_err());
    }

    #[test]
    fn holders_get_fixed_x_in_order() {
        let (_, meta, shares) = setup(2, 3);
        let xs: Vec<u8> = shares.iter().map(Share::x).collect();
        assert_eq!(xs, vec![1, 2, 3]);
        assert_eq!(meta.holders[2].x, 3);
    }

    #[test]
    fn duplicate_share_is_rejected_not_miscombined() {
        let (_, meta, shares) = setup(2, 3);
        let dup = copy(&shares[0]);
        assert!(matches!(
            combine(&meta, &[&shares[0], &dup]),
            Err(Error::DuplicateShare { x: 1 })
        ));
    }

    #[test]
    fn swapped_share_x_names_the_holder() {
        let (_, meta, shares) = setup(2, 2);
        // Customer's y presented under the trustee's x.
        let swapped = Share::new(2, ShareValue::from_bytes(*shares[0].expose_secret()));
        let err = combine(&meta, &[&shares[0], &swapped]).unwrap_err();
        assert!(
            matches!(err, Error::ShareMismatch { ref holder } if holder == "holder-1"),
            "{err:?}"
        );
    }

    #[test]
    fn x_zero_and_unregistered_x_are_rejected() {
        let (_, meta, shares) = setup(2, 2);
        let zero = Share::new(0, ShareValue::from_bytes([1; KEY_LEN]));
        assert!(matches!(
            combine(&meta, &[&shares[0], &zero]),
            Err(Error::UnknownHolder { x: 0 })
        ));
        let nine = Share::new(9, ShareValue::from_bytes([1; KEY_LEN]));
        assert!(matches!(
            combine(&meta, &[&shares[0], &nine]),
            Err(Error::UnknownHolder { x: 9 })
        ));
    }

    #[test]
    fn tampered_metadata_fingerprint_still_fails_commitment() {
        // An attacker who rewrites the public fingerprint to match a forged share still cannot
        // make combine return a key: the commitment check catches it.
        let (_, mut meta, shares) = setup(2, 2);
        let forged = Share::new(2, ShareValue::from_bytes([0x42; KEY_LEN]));
        meta.holders[1].fingerprint = hex::encode(fingerprint(&meta.key_id().unwrap(), &forged));
        assert!(matches!(
            combine(&meta, &[&shares[0], &forged]),
            Err(Error::CommitmentMismatch)
        ));
    }

    #[test]
    fn envelope_round_trips_and_rejects_typos() {
        let (_, meta, shares) = setup(2, 2);
        let env = ShareEnvelope {
            key: meta.key_id().unwrap(),
            share: copy(&shares[1]),
        };
        let text = env.encode();
        let back = ShareEnvelope::parse(&format!("  {}\n", text.as_str())).unwrap();
        assert_eq!(back.share, shares[1]);
        assert_eq!(back.key, meta.key_id().unwrap());
        // Every single-character substitution is caught by the checksum or alphabet check.
        let body_start = ENVELOPE_PREFIX.len();
        for i in body_start..text.len() {
            let mut chars: Vec<char> = text.chars().collect();
            chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
            let typo: String = chars.into_iter().collect();
            assert!(ShareEnvelope::parse(&typo).is_err(), "typo at {i} accepted");
        }
        assert!(ShareEnvelope::parse("treuhand-share-v2:AAAA").is_err());
        assert!(ShareEnvelope::parse("hello").is_err());
        assert!(ShareEnvelope::parse(&text[..text.len() - 3]).is_err());
    }

    #[test]
    fn raw_share_must_be_32_bytes() {
        let (_, meta, _) = setup(2, 2);
        assert!(share_from_raw(&meta, "holder-0", &[1; 31]).is_err());
        assert!(share_from_raw(&meta, "nobody", &[1; 32]).is_err());
        assert_eq!(share_from_raw(&meta, "holder-1", &[1; 32]).unwrap().x(), 2);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn any_k_of_n_recover_and_k_minus_1_do_not(k in 2u8..=5, extra in 0usize..=3, seed in any::<u64>()) {
            let n = usize::from(k) + extra;
            let (tmk, meta, shares) = setup(k, n);
            // A seeded choice of k distinct holders.
            let mut idx: Vec<usize> = (0..n).collect();
            let mut s = seed;
            for i in (1..n).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                idx.swap(i, (s >> 33) as usize % (i + 1));
            }
            let chosen: Vec<&Share> = idx[..usize::from(k)].iter().map(|&i| &shares[i]).collect();
            prop_assert_eq!(combine(&meta, &chosen).unwrap(), tmk);
            let fewer = &chosen[..usize::from(k) - 1];
            let is_not_enough = matches!(combine(&meta, fewer), Err(Error::NotEnoughShares { .. }));
            prop_assert!(is_not_enough);
        }

        #[test]
        fn every_single_byte_tamper_of_a_share_fails(pos in 0usize..KEY_LEN, delta in 1u8..=255, which in 0usize..2) {
            let (_, mut meta, shares) = setup(2, 2);
            let mut y = *shares[which].expose_secret();
            y[pos] ^= delta;
            let bad = Share::new(shares[which].x(), ShareValue::from_bytes(y));
            let other = &shares[1 - which];
            let is_mismatch = matches!(combine(&meta, &[other, &bad]), Err(Error::ShareMismatch { .. }));
            prop_assert!(is_mismatch);
            // Even with the fingerprint check bypassed, the commitment refuses the result.
            let key = meta.key_id().unwrap();
            meta.holders[which].fingerprint = hex::encode(fingerprint(&key, &bad));
            let is_commit = matches!(combine(&meta, &[other, &bad]), Err(Error::CommitmentMismatch));
            prop_assert!(is_commit);
        }
    }
}
