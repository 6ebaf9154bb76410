//! The proxy's side of the threshold layer: its own evaluation with the customer's share,
//! checking every holder's proof, and combining in the exponent.
//!
//! Per derivation the proxy hashes `P` once ([`ObjectIdentity::object_point`]) and, when the
//! set of holders that will answer is known in advance (a tenant key with exactly as many
//! holders as its threshold), applies its own Lagrange weight while it evaluates
//! ([`evaluate_local_weighted`]), so the secret part of the combination costs one
//! constant-time scalar multiplication instead of two.

use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::VartimeMultiscalarMul;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::{
    Evaluation, KeyShare, OBJECT_CONTEXT, ObjectIdentity, ObjectPoint, ObjectSecret, OprfError,
    RegisteredKey,
    dleq::{self, Encoded},
};

/// Proxy side: verifies every holder's proof against its registered `K_i`, then combines
/// `Y = Σ λ_i·Y_i` (Lagrange at 0 in the exponent). A bad proof is named by holder index;
/// no output is produced unless every given evaluation verifies.
///
/// `threshold` must be the tenant's registered threshold, not a number from the request: with
/// fewer answers than the real threshold the interpolation yields a wrong `Y` (and so a KEK
/// that opens nothing), which this function cannot detect from the answers alone.
pub fn verify_and_combine(
    identity: &ObjectIdentity,
    evaluations: &[(u8, RistrettoPoint, Evaluation)],
    threshold: usize,
) -> Result<ObjectSecret, OprfError> {
    combine(identity, &[], evaluations, threshold)
}

/// `Y_c = k_c·P` for a share the caller holds itself (the proxy, with the customer's SSE-C
/// share of this one request): no proof, since nobody else has to be convinced. Pass the
/// result to [`combine`] as a local evaluation. Secret (with the other answers it yields
/// `Y`).
pub fn evaluate_local(
    share: &KeyShare,
    identity: &ObjectIdentity,
) -> Result<LocalEvaluation, OprfError> {
    Ok(evaluate_local_at(share, &identity.object_point()?))
}

/// [`evaluate_local`] at a `P` the caller already hashed.
pub fn evaluate_local_at(share: &KeyShare, point: &ObjectPoint) -> LocalEvaluation {
    LocalEvaluation {
        index: share.index,
        element: share.value * point.point,
        weighted_for: Vec::new(),
    }
}

/// [`evaluate_local_at`] for a combination over exactly the holders `indices` (which must
/// contain the share's own index): `λ_i·k_i·P` with the share's Lagrange weight for that set
/// applied to the scalar, so [`combine_at`] adds it as it is instead of multiplying the
/// secret point again. Combined with another set of holders it is still correct: the weight
/// is then corrected, at the cost of that multiplication.
///
/// # Errors
/// [`OprfError::ZeroIndex`], [`OprfError::DuplicateIndex`] for a malformed set,
/// [`OprfError::Internal`] if the share's index is not in it.
pub fn evaluate_local_weighted(
    share: &KeyShare,
    point: &ObjectPoint,
    indices: &[u8],
) -> Result<LocalEvaluation, OprfError> {
    let weighted_for = index_set(indices)?;
    let position = weighted_for
        .iter()
        .position(|i| *i == share.index)
        .ok_or(OprfError::Internal("the share is not one of the holders"))?;
    let weight = lagrange_at_zero(&weighted_for)?
        .get(position)
        .copied()
        .ok_or(OprfError::Internal("lagrange weights"))?;
    // The weighted share is as secret as the share: constant time, zeroized.
    let weighted = zeroize::Zeroizing::new(weight * share.value);
    Ok(LocalEvaluation {
        index: share.index,
        element: *weighted * point.point,
        weighted_for,
    })
}

/// `indices` sorted, after checking they are non-zero and distinct.
fn index_set(indices: &[u8]) -> Result<Vec<u8>, OprfError> {
    let mut set = indices.to_vec();
    set.sort_unstable();
    for pair in set.windows(2) {
        if pair[0] == pair[1] {
            return Err(OprfError::DuplicateIndex { index: pair[0] });
        }
    }
    if set.first() == Some(&0) {
        return Err(OprfError::ZeroIndex);
    }
    Ok(set)
}

/// The caller's own evaluation `(i, k_i·P)` from [`evaluate_local`], or `(i, λ_i·k_i·P)` from
/// [`evaluate_local_weighted`]. Zeroized on drop.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct LocalEvaluation {
    index: u8,
    element: RistrettoPoint,
    /// The (sorted) holder set whose weight `element` already carries; empty for none.
    weighted_for: Vec<u8>,
}

impl std::fmt::Debug for LocalEvaluation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEvaluation")
            .field("index", &self.index)
            .field("element", &"[REDACTED]")
            .finish()
    }
}

/// [`verify_and_combine`] with evaluations the caller computed itself ([`evaluate_local`],
/// trusted, unproven) besides the holders' proven ones. Holder indices must be distinct over
/// both lists.
pub fn combine(
    identity: &ObjectIdentity,
    local: &[LocalEvaluation],
    remote: &[(u8, RistrettoPoint, Evaluation)],
    threshold: usize,
) -> Result<ObjectSecret, OprfError> {
    let remote: Vec<_> = remote
        .iter()
        .map(|(index, public, evaluation)| {
            (*index, RegisteredKey::from_point(*public), *evaluation)
        })
        .collect();
    combine_at(&identity.object_point()?, local, &remote, threshold)
}

/// [`combine`] at a `P` the caller already hashed (from the same identity as the local
/// evaluations and the holders' answers), with the holders' keys as parsed once.
pub fn combine_at(
    point: &ObjectPoint,
    local: &[LocalEvaluation],
    remote: &[(u8, RegisteredKey, Evaluation)],
    threshold: usize,
) -> Result<ObjectSecret, OprfError> {
    if !(2..=255).contains(&threshold) {
        return Err(OprfError::InvalidThreshold {
            threshold,
            holders: remote.len(),
        });
    }
    // Cheap structural checks first, so a duplicate is reported as such and not as a proof
    // failure.
    let indices: Vec<u8> = local
        .iter()
        .map(|l| l.index)
        .chain(remote.iter().map(|(i, _, _)| *i))
        .collect();
    let mut seen = [false; 256];
    for &index in &indices {
        if index == 0 {
            return Err(OprfError::ZeroIndex);
        }
        let slot = &mut seen[usize::from(index)];
        if *slot {
            return Err(OprfError::DuplicateIndex { index });
        }
        *slot = true;
    }
    if indices.len() < threshold {
        return Err(OprfError::NotEnough {
            have: indices.len(),
            need: threshold,
        });
    }
    for (index, public, evaluation) in remote {
        let element_bytes = evaluation.element.compress().to_bytes();
        let ok = dleq::verify_object(
            OBJECT_CONTEXT,
            public.encoded(),
            point.encoded(),
            Encoded {
                point: &evaluation.element,
                bytes: &element_bytes,
            },
            &evaluation.proof,
        )?;
        if !ok {
            return Err(OprfError::BadEvaluation { index: *index });
        }
    }
    // All verified shares lie on one polynomial of degree < threshold, so interpolating over
    // all of them gives the same value as any threshold subset.
    let weights = lagrange_at_zero(&indices)?;
    let (local_weights, remote_weights) = weights.split_at(local.len());
    // A local element is secret (one share's worth of Y): constant-time products. The
    // holders' answers and all weights are public: one variable-time multiscalar product.
    let mut y = RistrettoPoint::vartime_multiscalar_mul(
        remote_weights,
        remote.iter().map(|(_, _, evaluation)| &evaluation.element),
    );
    let mut combined_set: Option<Vec<u8>> = None;
    for (l, weight) in local.iter().zip(local_weights) {
        if l.weighted_for.is_empty() {
            y += weight * l.element;
            continue;
        }
        let set = combined_set.get_or_insert_with(|| index_set(&indices).unwrap_or_default());
        if *set == l.weighted_for {
            y += l.element;
        } else {
            // Weighted for another set of holders: replace that weight by this set's.
            let position = l
                .weighted_for
                .iter()
                .position(|i| *i == l.index)
                .ok_or(OprfError::Internal("weighted local evaluation"))?;
            let applied = lagrange_at_zero(&l.weighted_for)?
                .get(position)
                .copied()
                .ok_or(OprfError::Internal("lagrange weights"))?;
            y += (weight * applied.invert()) * l.element;
        }
    }
    Ok(ObjectSecret(y))
}

/// The weights `λ_i(0)` of [`lagrange_at`] for every index of `indices` (distinct, non-zero),
/// in order, without a scalar inversion: every denominator is a product of differences of two
/// indices, whose inverses [`small_inverse`] keeps.
pub(super) fn lagrange_at_zero(indices: &[u8]) -> Result<Vec<Scalar>, OprfError> {
    let mut weights = Vec::with_capacity(indices.len());
    for &i in indices {
        let mut weight = Scalar::ONE;
        for &j in indices.iter().filter(|j| **j != i) {
            // x_j / (x_j - x_i), the difference's inverse from the table (negated below 0).
            let inverse = small_inverse(j.abs_diff(i))?;
            weight *= Scalar::from(j) * if j > i { inverse } else { -inverse };
        }
        weights.push(weight);
    }
    Ok(weights)
}

/// `1/d` for a difference `d` of two distinct holder indices (1..=254), from a table computed
/// once, with one inversion, the first time it is needed. A constant of the group, not state.
fn small_inverse(d: u8) -> Result<Scalar, OprfError> {
    static INVERSES: std::sync::OnceLock<Vec<Scalar>> = std::sync::OnceLock::new();
    let table = INVERSES.get_or_init(|| {
        let mut table: Vec<Scalar> = (1..=u8::MAX).map(Scalar::from).collect();
        Scalar::batch_invert(&mut table);
        table
    });
    usize::from(d)
        .checked_sub(1)
        .and_then(|index| table.get(index))
        .copied()
        .ok_or(OprfError::Internal("repeated index"))
}

/// `λ_i(x) = Π_{j≠i} (x_j - x) / (x_j - x_i)` over the given (distinct, non-zero) indices:
/// the weight of point `i` when interpolating at `x` (`x = 0` gives the secret).
pub(crate) fn lagrange_at(
    x: Scalar,
    i: u8,
    indices: impl Iterator<Item = u8>,
) -> Result<Scalar, OprfError> {
    let xi = Scalar::from(i);
    let mut numerator = Scalar::ONE;
    let mut denominator = Scalar::ONE;
    for j in indices.filter(|j| *j != i) {
        let xj = Scalar::from(j);
        numerator *= xj - x;
        denominator *= xj - xi;
    }
    if denominator == Scalar::ZERO {
        return Err(OprfError::Internal("repeated index"));
    }
    Ok(numerator * denominator.invert())
}
