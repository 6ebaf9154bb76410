//! An atomic streaming write: one `put` for a small object, a backend multipart upload for a
//! large one, and nothing visible before [`Writer::complete`].

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

use super::error::Result;

/// An atomic streaming write: nothing is visible until [`Writer::complete`] returns.
pub struct Writer {
    store: Arc<dyn ObjectStore>,
    path: Path,
    chunk_size: usize,
    buffer: Vec<u8>,
    upload: Option<WriteMultipart>,
    written: u64,
}

impl Writer {
    /// A write of `path` that switches to a multipart upload at `chunk_size` bytes.
    pub(super) fn new(store: Arc<dyn ObjectStore>, path: Path, chunk_size: usize) -> Self {
        Self {
            store,
            path,
            chunk_size,
            buffer: Vec::new(),
            upload: None,
            written: 0,
        }
    }

    /// Appends bytes; applies backpressure when parts are in flight.
    ///
    /// # Errors
    /// [`Error::Backend`](super::Error::Backend).
    pub async fn write(&mut self, data: &[u8]) -> Result<()> {
        self.written += data.len() as u64;
        if let Some(upload) = &mut self.upload {
            upload.wait_for_capacity(2).await?;
            upload.write(data);
            return Ok(());
        }
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= self.chunk_size {
            let inner = self.store.put_multipart(&self.path).await?;
            let mut upload = WriteMultipart::new_with_chunk_size(inner, self.chunk_size);
            upload.write(&std::mem::take(&mut self.buffer));
            self.upload = Some(upload);
        }
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Publishes the object atomically.
    ///
    /// # Errors
    /// [`Error::Backend`](super::Error::Backend); the object is then not visible.
    pub async fn complete(mut self) -> Result<()> {
        match self.upload.take() {
            Some(upload) => {
                upload.finish().await?;
            }
            None => {
                let data = Bytes::from(std::mem::take(&mut self.buffer));
                self.store
                    .put(&self.path, PutPayload::from_bytes(data))
                    .await?;
            }
        }
        Ok(())
    }

    /// Abandons the write; nothing becomes visible.
    pub async fn abort(mut self) {
        if let Some(upload) = self.upload.take()
            && let Err(e) = upload.abort().await
        {
            tracing::warn!(error = %e, "aborting a backend multipart upload failed");
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // A writer dropped mid-stream (client went away, handler error): abort in the
        // background so staged data is removed. The object was never published.
        if let Some(upload) = self.upload.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            handle.spawn(async move {
                let _ = upload.abort().await;
            });
        }
    }
}
