//! ListMultipartUploads: the uploads in progress of a bucket, one page at a time.
//!
//! The staging path names the upload id only; the key is in the staged header
//! ([`StagedHeader`]), so a page reads the staged header of every upload in progress of the
//! bucket (concurrently), then sorts and pages them. Uploads are ordered by key, then by upload
//! id (byte order of both), which is what the `key-marker`/`upload-id-marker` pair resumes
//! after. Completed uploads (a marker in their directory) are not listed.

use std::collections::BTreeMap;
use std::time::SystemTime;

use futures::StreamExt;
use s3s::dto;

use super::StagedHeader;
use crate::proxy::error::ProxyError;
use crate::proxy::listing;
use crate::proxy::s3::metadata::timestamp;
use crate::proxy::s3::paths::{COMPLETED_MARKER, STAGED_HEADER, TenantPaths};
use crate::proxy::s3::{Op, Out, Proxy};
use crate::storage;

/// Staged headers read at once.
const CONCURRENT_READS: usize = 16;

/// One upload in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Listed {
    pub(super) key: String,
    pub(super) upload_id: String,
    pub(super) initiated: SystemTime,
}

/// What a page lists: the listing parameters of ListMultipartUploads.
#[derive(Debug, Default)]
pub(super) struct UploadsRequest<'a> {
    pub(super) prefix: &'a str,
    /// An empty delimiter is ignored, as S3 does.
    pub(super) delimiter: Option<&'a str>,
    pub(super) key_marker: Option<&'a str>,
    /// Only with `key_marker`: uploads of that key with a larger id follow it.
    pub(super) upload_id_marker: Option<&'a str>,
    pub(super) max_uploads: usize,
}

/// One entry of a page: an upload, or a common prefix (which counts as one entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Entry {
    Upload(Listed),
    Prefix(String),
}

/// One page of uploads.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct UploadsPage {
    pub(super) entries: Vec<Entry>,
    pub(super) truncated: bool,
}

impl UploadsPage {
    /// `NextKeyMarker` and `NextUploadIdMarker`: the last entry (a common prefix has no id).
    fn next_markers(&self) -> (Option<String>, Option<String>) {
        match self.entries.last() {
            Some(Entry::Upload(u)) => (Some(u.key.clone()), Some(u.upload_id.clone())),
            Some(Entry::Prefix(p)) => (Some(p.clone()), None),
            None => (None, None),
        }
    }
}

/// The page `req` selects from `uploads` (in any order). Pure.
pub(super) fn page(mut uploads: Vec<Listed>, req: &UploadsRequest<'_>) -> UploadsPage {
    uploads.sort_by(|a, b| (&a.key, &a.upload_id).cmp(&(&b.key, &b.upload_id)));
    let delimiter = req.delimiter.filter(|d| !d.is_empty());
    let mut out = UploadsPage::default();
    for upload in uploads {
        let Some(rest) = upload.key.strip_prefix(req.prefix) else {
            continue;
        };
        let after_marker = match (req.key_marker, req.upload_id_marker) {
            (Some(key), Some(id)) => {
                upload.key.as_str() > key || (upload.key == key && upload.upload_id.as_str() > id)
            }
            (Some(key), None) => upload.key.as_str() > key,
            (None, _) => true,
        };
        if !after_marker {
            continue;
        }
        let group = delimiter.and_then(|d| {
            rest.find(d)
                .map(|i| upload.key[..req.prefix.len() + i + d.len()].to_owned())
        });
        let entry = match group {
            // A group returned before (as the marker or earlier) is not repeated.
            Some(g) if req.key_marker.is_some_and(|m| g.as_str() <= m) => continue,
            // Keys sharing a prefix are adjacent in key order: one entry per group.
            Some(g) if out.entries.last() == Some(&Entry::Prefix(g.clone())) => continue,
            Some(g) => Entry::Prefix(g),
            None => Entry::Upload(upload),
        };
        if out.entries.len() >= req.max_uploads {
            out.truncated = true;
            break;
        }
        out.entries.push(entry);
    }
    out
}

/// What the listing of a bucket's upload directory shows of one upload.
#[derive(Default)]
struct Staging {
    header: Option<storage::Meta>,
    completed: bool,
}

impl Proxy {
    /// Every upload in progress of `bucket` whose key starts with `prefix`.
    async fn uploads_in_progress(
        &self,
        paths: TenantPaths<'_>,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<Listed>, ProxyError> {
        let dir = paths.bucket_uploads_dir(bucket);
        let mut by_id: BTreeMap<String, Staging> = BTreeMap::new();
        let mut files = self.storage.list(&dir);
        while let Some(item) = files.next().await {
            let (path, meta) = item?;
            let Some((id, name)) = path
                .strip_prefix(dir.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
                .and_then(|rest| rest.split_once('/'))
            else {
                continue;
            };
            if super::UploadId::parse(id).is_err() {
                continue;
            }
            let staging = by_id.entry(id.to_owned()).or_default();
            match name {
                STAGED_HEADER => staging.header = Some(meta),
                COMPLETED_MARKER => staging.completed = true,
                _ => {}
            }
        }
        let candidates = by_id.into_iter().filter_map(|(id, s)| match s {
            Staging {
                header: Some(meta),
                completed: false,
            } => Some((id, meta)),
            _ => None,
        });
        let reads = futures::stream::iter(candidates)
            .map(|(id, meta)| async move {
                let path = paths.upload(bucket, &id).header();
                let staged = match self.read_small(&path).await {
                    Ok(Some((staged, _))) => StagedHeader::decode_any(&staged).ok(),
                    // Gone since the listing (completed, aborted): not in progress any more.
                    Ok(None) => return Ok(None),
                    Err(ProxyError::Integrity) => None,
                    Err(e) => return Err(e),
                };
                // One damaged staging must not break the bucket's listing.
                let Some(staged) = staged else {
                    tracing::warn!(upload_id = %id, "unreadable staged header skipped");
                    return Ok(None);
                };
                Ok::<_, ProxyError>(Some(Listed {
                    key: staged.key().to_owned(),
                    upload_id: id,
                    // The header is written once, at CreateMultipartUpload.
                    initiated: meta.last_modified,
                }))
            })
            .buffer_unordered(CONCURRENT_READS);
        let mut uploads = Vec::new();
        futures::pin_mut!(reads);
        while let Some(listed) = reads.next().await {
            if let Some(listed) = listed?
                && listed.key.starts_with(prefix)
            {
                uploads.push(listed);
            }
        }
        Ok(uploads)
    }
}

pub(in crate::proxy::s3) async fn list_multipart_uploads(
    op: Op<'_, dto::ListMultipartUploadsInput>,
) -> Out<dto::ListMultipartUploadsOutput> {
    let Op(proxy, request, input) = op;
    let paths = request.paths();
    let encode = listing::url_encoding(input.encoding_type.as_ref().map(|e| e.as_str()))?;
    proxy.require_bucket(paths, &input.bucket).await?;
    let prefix = input.prefix.as_deref().unwrap_or("");
    let req = UploadsRequest {
        prefix,
        delimiter: input.delimiter.as_deref(),
        key_marker: input.key_marker.as_deref().filter(|m| !m.is_empty()),
        upload_id_marker: input.upload_id_marker.as_deref().filter(|m| !m.is_empty()),
        max_uploads: listing::max_keys(input.max_uploads),
    };
    let all = proxy
        .uploads_in_progress(paths, &input.bucket, prefix)
        .await?;
    let page = page(all, &req);
    let max_uploads = req.max_uploads;
    let prefix = prefix.to_owned();
    let (next_key_marker, next_upload_id_marker) = page.next_markers();
    let encoded = |name: String| listing::encode_if(encode, name);
    let owner = || dto::Owner {
        id: Some(request.tenant.id.clone()),
        display_name: Some(request.tenant.id.clone()),
    };
    let mut uploads = Vec::new();
    let mut common_prefixes = Vec::new();
    for entry in page.entries {
        match entry {
            Entry::Upload(u) => uploads.push(dto::MultipartUpload {
                key: Some(encoded(u.key)),
                upload_id: Some(u.upload_id),
                initiated: Some(timestamp(u.initiated)),
                initiator: Some(dto::Initiator {
                    id: Some(request.tenant.id.clone()),
                    display_name: Some(request.tenant.id.clone()),
                }),
                owner: Some(owner()),
                storage_class: Some(dto::StorageClass::from_static(dto::StorageClass::STANDARD)),
                ..Default::default()
            }),
            Entry::Prefix(p) => common_prefixes.push(dto::CommonPrefix {
                prefix: Some(encoded(p)),
            }),
        }
    }
    Ok(dto::ListMultipartUploadsOutput {
        bucket: Some(input.bucket),
        prefix: Some(encoded(prefix)),
        delimiter: input.delimiter.map(encoded),
        key_marker: Some(encoded(input.key_marker.unwrap_or_default())),
        upload_id_marker: Some(input.upload_id_marker.unwrap_or_default()),
        next_key_marker: next_key_marker.map(encoded),
        next_upload_id_marker,
        max_uploads: i32::try_from(max_uploads).ok(),
        is_truncated: Some(page.truncated),
        uploads: Some(uploads),
        common_prefixes: Some(common_prefixes),
        encoding_type: input.encoding_type,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests
    use super::*;

    fn listed(key: &str, id: &str) -> Listed {
        Listed {
            key: key.into(),
            upload_id: id.into(),
            initiated: SystemTime::UNIX_EPOCH,
        }
    }

    fn names(p: &UploadsPage) -> Vec<String> {
        p.entries
            .iter()
            .map(|e| match e {
                Entry::Upload(u) => format!("{}#{}", u.key, u.upload_id),
                Entry::Prefix(p) => p.clone(),
            })
            .collect()
    }

    fn all() -> Vec<Listed> {
        vec![
            listed("b", "2"),
            listed("a", "9"),
            listed("a", "1"),
            listed("dir/x", "1"),
            listed("dir/y", "1"),
            listed("c", "1"),
        ]
    }

    fn req(max: usize) -> UploadsRequest<'static> {
        UploadsRequest {
            max_uploads: max,
            ..Default::default()
        }
    }

    #[test]
    fn uploads_are_listed_by_key_then_upload_id_and_paged_by_both_markers() {
        let first = page(all(), &req(2));
        assert_eq!(names(&first), ["a#1", "a#9"]);
        assert!(first.truncated);
        let (key, id) = first.next_markers();
        let second = page(
            all(),
            &UploadsRequest {
                key_marker: key.as_deref(),
                upload_id_marker: id.as_deref(),
                ..req(2)
            },
        );
        assert_eq!(names(&second), ["b#2", "c#1"]);
        let (key, id) = second.next_markers();
        let third = page(
            all(),
            &UploadsRequest {
                key_marker: key.as_deref(),
                upload_id_marker: id.as_deref(),
                ..req(2)
            },
        );
        assert_eq!(names(&third), ["dir/x#1", "dir/y#1"]);
        assert!(!third.truncated);
        // A key marker alone skips every upload of that key.
        let after_a = page(
            all(),
            &UploadsRequest {
                key_marker: Some("a"),
                upload_id_marker: Some("1"),
                ..req(10)
            },
        );
        assert_eq!(names(&after_a)[0], "a#9");
        let after_a = page(
            all(),
            &UploadsRequest {
                key_marker: Some("a"),
                ..req(10)
            },
        );
        assert_eq!(names(&after_a)[0], "b#2");
    }

    #[test]
    fn a_delimiter_folds_keys_into_common_prefixes_counted_once() {
        let p = page(
            all(),
            &UploadsRequest {
                delimiter: Some("/"),
                ..req(10)
            },
        );
        assert_eq!(names(&p), ["a#1", "a#9", "b#2", "c#1", "dir/"]);
        // A page ending in a common prefix resumes after the whole group.
        let p = page(
            all(),
            &UploadsRequest {
                delimiter: Some("/"),
                key_marker: Some("dir/"),
                ..req(10)
            },
        );
        assert!(p.entries.is_empty() && !p.truncated);
        let p = page(
            all(),
            &UploadsRequest {
                prefix: "dir/",
                delimiter: Some("/"),
                ..req(10)
            },
        );
        assert_eq!(names(&p), ["dir/x#1", "dir/y#1"]);
    }

    #[test]
    fn max_uploads_zero_lists_nothing() {
        let p = page(all(), &req(0));
        assert!(p.entries.is_empty());
        assert!(p.truncated);
        assert_eq!(page(Vec::new(), &req(0)), UploadsPage::default());
    }
}
