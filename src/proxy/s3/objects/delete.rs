//! DeleteObject and DeleteObjects.

use s3s::dto;

use super::super::{Op, Out};
use crate::proxy::error::{ProxyError, to_s3_error};

/// S3 takes at most this many keys in one DeleteObjects request.
const MAX_DELETE_KEYS: usize = 1000;

/// S3's longest key, in UTF-8 bytes.
const MAX_KEY_LEN: usize = 1024;

pub(crate) async fn delete_object(
    op: Op<'_, dto::DeleteObjectInput>,
) -> Out<dto::DeleteObjectOutput> {
    let Op(proxy, request, input) = op;
    let (paths, input) = (request.paths(), &input);
    proxy.require_bucket(paths, &input.bucket).await?;
    proxy
        .storage
        .delete(&paths.object(&input.bucket, &input.key))
        .await?;
    Ok(dto::DeleteObjectOutput::default())
}

/// Deletes each key on its own: a key that cannot be deleted (an invalid name, a backend
/// failure) is an `Error` entry of the answer, not a failed request; a missing key is deleted,
/// as on S3. `Quiet` answers with the errors only.
pub(crate) async fn delete_objects(
    op: Op<'_, dto::DeleteObjectsInput>,
) -> Out<dto::DeleteObjectsOutput> {
    let Op(proxy, request, input) = op;
    let count = input.delete.objects.len();
    if count > MAX_DELETE_KEYS {
        return Err(ProxyError::MalformedXml(format!(
            "a DeleteObjects request names {count} keys; at most {MAX_DELETE_KEYS} are allowed"
        )));
    }
    let paths = request.paths();
    proxy.require_bucket(paths, &input.bucket).await?;
    let quiet = input.delete.quiet.unwrap_or(false);
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for object in input.delete.objects {
        if object.key.len() > MAX_KEY_LEN {
            // S3 refuses such a key in the path of any request; here it is one key of many.
            errors.push(dto::Error {
                code: Some("KeyTooLongError".into()),
                key: Some(object.key),
                message: Some(format!("the key is longer than {MAX_KEY_LEN} bytes")),
                ..Default::default()
            });
            continue;
        }
        let path = paths.object(&input.bucket, &object.key);
        match proxy.storage.delete(&path).await.map_err(ProxyError::from) {
            Ok(()) => {
                if !quiet {
                    deleted.push(dto::DeletedObject {
                        key: Some(object.key),
                        ..Default::default()
                    });
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "delete of one key failed");
                // The same code and message the key would get from DeleteObject.
                let s3 = to_s3_error(&e);
                errors.push(dto::Error {
                    code: Some(s3.code().as_str().to_owned()),
                    key: Some(object.key),
                    message: s3.message().map(str::to_owned),
                    ..Default::default()
                });
            }
        }
    }
    Ok(dto::DeleteObjectsOutput {
        deleted: (!deleted.is_empty()).then_some(deleted),
        errors: (!errors.is_empty()).then_some(errors),
        ..Default::default()
    })
}
