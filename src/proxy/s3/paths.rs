//! Where a tenant's things live in storage: the only place that knows the layout.
//!
//! ```text
//! tenants/<tenant>/buckets/<bucket>                     empty bucket marker
//! tenants/<tenant>/objects/<bucket>/<encoded key>       header ‖ runs [‖ footer]
//! tenants/<tenant>/uploads/<bucket>/<id>/header         multipart header (+ object key)
//! tenants/<tenant>/uploads/<bucket>/<id>/p<part>-<len>-<etag>-<attempt>
//!                                                       one staged run per part attempt
//! tenants/<tenant>/uploads/<bucket>/<id>/tmp-<random>   a part attempt being written
//! tenants/<tenant>/uploads/<bucket>/<id>/completed      after Complete: ETag and key only
//! ```
//!
//! The object key encoding is [`crate::storage::encode_key`].

use crate::storage;

/// Storage path of a bucket's marker object (used by `treuhand dev` to pre-create buckets).
pub fn bucket_marker_path(tenant: &str, bucket: &str) -> String {
    TenantPaths::new(tenant).bucket_marker(bucket)
}

/// The storage paths of one tenant.
#[derive(Debug, Clone, Copy)]
pub struct TenantPaths<'a> {
    tenant: &'a str,
}

impl<'a> TenantPaths<'a> {
    /// The paths of tenant `tenant`.
    pub fn new(tenant: &'a str) -> Self {
        Self { tenant }
    }

    /// The directory of the bucket markers; each entry's name is a bucket name.
    pub fn buckets_dir(&self) -> String {
        format!("tenants/{}/buckets", self.tenant)
    }

    /// The (empty) object whose existence is the bucket's.
    pub fn bucket_marker(&self, bucket: &str) -> String {
        format!("{}/{bucket}", self.buckets_dir())
    }

    /// The directory of a bucket's objects.
    pub fn objects_dir(&self, bucket: &str) -> String {
        format!("tenants/{}/objects/{bucket}", self.tenant)
    }

    /// The stored object of `key`.
    pub fn object(&self, bucket: &str, key: &str) -> String {
        format!("{}/{}", self.objects_dir(bucket), storage::encode_key(key))
    }

    /// The directory of all this tenant's multipart uploads (what the reaper sweeps).
    pub fn uploads_dir(&self) -> String {
        format!("tenants/{}/uploads", self.tenant)
    }

    /// The directory of one bucket's multipart uploads (what ListMultipartUploads lists); each
    /// entry is an upload id's directory.
    pub fn bucket_uploads_dir(&self, bucket: &str) -> String {
        format!("{}/{bucket}", self.uploads_dir())
    }

    /// The staging of one multipart upload; `upload_id` is a checked upload id.
    pub fn upload(&self, bucket: &str, upload_id: &str) -> UploadPaths {
        UploadPaths {
            dir: format!("{}/{upload_id}", self.bucket_uploads_dir(bucket)),
        }
    }
}

/// The file name of a completed upload's marker ([`UploadPaths::completed`]).
pub const COMPLETED_MARKER: &str = "completed";

/// The file name of an upload's staged header ([`UploadPaths::header`]).
pub const STAGED_HEADER: &str = "header";

/// The staging directory of one multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadPaths {
    dir: String,
}

impl UploadPaths {
    /// The directory itself (listing it finds the staged parts; it also keys the cipher cache).
    pub fn dir(&self) -> &str {
        &self.dir
    }

    /// The staged header (with the object key).
    pub fn header(&self) -> String {
        format!("{}/{STAGED_HEADER}", self.dir)
    }

    /// A part attempt while it is written, before it is renamed to [`Self::part`].
    pub fn temporary(&self, random: &str) -> String {
        format!("{}/tmp-{random}", self.dir)
    }

    /// The marker a completed upload leaves behind (its ETag and key, never key material), so
    /// a repeated CompleteMultipartUpload answers as the first did; the reaper removes it.
    pub fn completed(&self) -> String {
        format!("{}/{COMPLETED_MARKER}", self.dir)
    }

    /// A staged part attempt, by its name (see `multipart::StagedPart`).
    pub fn part(&self, name: &str) -> String {
        format!("{}/{name}", self.dir)
    }
}
