//! Strict tenants on the proxy's side: the proxy cannot check a strict tenant's SigV4
//! signature (it never knows the secret), so it forwards the signed request to the tenant's
//! signature-checking holder and lets the request through only on that holder's yes.
//!
//! CONTRACT (issue 12): the strict helper implements the detection, forwarding and stripping
//! here and in `guard.rs`; `s3::request::RequestContext::of` takes the tenant from a
//! [`StrictAuth`] extension when there is one, and passes `signed` with every evaluation.

use std::sync::Arc;

use crate::trustee::wire::SignedRequest;

/// Put into a request's extensions once the tenant's holder has accepted its signature.
#[derive(Debug, Clone)]
pub struct StrictAuth {
    /// The access key id the request was signed with (it names the tenant).
    pub access_key_id: String,
    /// The request as signed, forwarded with every evaluation for it.
    pub signed: Arc<SignedRequest>,
}
