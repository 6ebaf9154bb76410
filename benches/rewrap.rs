//! Rewrap cost per object on the filesystem backend (docs/rewrap.md): read the header, derive
//! the old and the new per-object KEK (the threshold OPRF evaluated locally over both
//! holders' shares, no trustees), re-wrap the DEK under the other key version and overwrite
//! the header in place (`Storage::replace_prefix`, fsync on). Objects of 1 MiB and 1 GiB: the
//! time must not grow with the size. The bodies are sparse files (the rewrap never reads
//! them), so the 1 GiB setup costs nothing.
// Benchmarks unwrap: a failure is a broken benchmark, not a condition to handle.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use treuhand::crypto::oprf::{self, KeyShare, ObjectId, ObjectIdentity};
use treuhand::crypto::{DekContext, KeyId};
use treuhand::format::{self, Layout, Metadata};
use treuhand::secret::Kek;
use treuhand::storage::{Storage, StorageConfig};

const TENANT: &str = "bench";
const BUCKET: &str = "bucket";
const KEY: &str = "object";
const PATH: &str = "tenants/bench/objects/bucket/object";

/// Both holders' shares of one key version (2-of-2).
struct Version {
    key: KeyId,
    shares: Vec<KeyShare>,
}

impl Version {
    fn new(version: u32) -> Self {
        let (shares, _) = oprf::split(&oprf::OprfKey::random().unwrap(), 2, 2).unwrap();
        Self {
            key: KeyId::new(TENANT, version).unwrap(),
            shares,
        }
    }

    /// The per-object KEK of object `id`, as the proxy derives it from the holders' answers.
    fn kek(&self, id: ObjectId) -> Kek {
        let identity = ObjectIdentity {
            tenant: TENANT.into(),
            key_version: self.key.version,
            bucket: BUCKET.into(),
            key: KEY.into(),
            id,
        };
        let local: Vec<_> = self
            .shares
            .iter()
            .map(|s| oprf::evaluate_local(s, &identity).unwrap())
            .collect();
        let secret = oprf::combine(&identity, &local, &[], 2).unwrap();
        oprf::object_kek(&secret, &identity).unwrap()
    }

    fn context(&self) -> DekContext<'_> {
        DekContext {
            key: &self.key,
            bucket: BUCKET,
            object: KEY,
        }
    }
}

/// One rewrap of the stored object to the version it is not under.
async fn rewrap(storage: &Storage, versions: &[Version; 2], size: u64) {
    let probe = size.min(format::MAX_HEADER_LEN as u64);
    let prefix = storage.read_range(PATH, 0..probe).await.unwrap();
    let info = format::peek_header(&prefix).unwrap();
    let (old, new) = if info.key_version == 1 {
        (&versions[0], &versions[1])
    } else {
        (&versions[1], &versions[0])
    };
    let old_kek = old.kek(info.object_id.unwrap());
    let (cipher, old_len) = format::open_object(&old_kek, &old.context(), &prefix).unwrap();
    let id = ObjectId::random().unwrap();
    let rewrapped = cipher
        .rewrap(&new.kek(id), &new.context(), Some(id))
        .unwrap();
    let how = storage
        .replace_prefix(PATH, &prefix[..old_len], &rewrapped.header)
        .await
        .unwrap();
    black_box(how);
}

fn rewrap_fs(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let versions = [Version::new(1), Version::new(2)];
    let mut group = c.benchmark_group("rewrap_fs_in_place");
    for (label, plaintext) in [("1MiB", 1u64 << 20), ("1GiB", 1u64 << 30)] {
        let dir = tempfile::tempdir().unwrap();
        let config = StorageConfig::Fs {
            root: dir.path().to_path_buf(),
            fsync: true,
        };
        let storage = Storage::from_config(&config).unwrap();
        // The object: a v3 header under version 1, then a sparse body of the run's length.
        let id = ObjectId::random().unwrap();
        let v1 = &versions[0];
        let (_, header) = format::new_object_v3(
            &v1.kek(id),
            &v1.context(),
            id,
            Layout::Single,
            &Metadata::new(),
        )
        .unwrap();
        let size = header.len() as u64
            + format::run_ciphertext_len(plaintext, format::DEFAULT_SEGMENT_SIZE);
        let file = dir.path().join(PATH);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, &header).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .unwrap()
            .set_len(size)
            .unwrap();
        group.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter(|| runtime.block_on(rewrap(&storage, &versions, size)))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(2)).warm_up_time(std::time::Duration::from_millis(300));
    targets = rewrap_fs
}
criterion_main!(benches);
