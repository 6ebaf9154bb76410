//! Crypto-core and object-format micro-benchmarks.
//!
//! `raw_ring_seal` is the baseline: ring's AES-256-GCM sealing 64 KiB chunks in place, with no
//! framing and no copies. The streaming encryptor and decryptor are compared against it in the
//! same run (see docs/benchmarks.md for the ratio).
// Benchmarks unwrap: a failure is a broken benchmark, not a condition to handle.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Bencher, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use treuhand::crypto::envelope::{commit, generate_tmk, verify_commitment};
use treuhand::crypto::{DekContext, KeyId, oprf, shamir};
use treuhand::format::{self, Layout, ObjectCipher};
use treuhand::secret::Kek;

const SEG: usize = 64 * 1024;
const SIZES: [usize; 5] = [
    1024,
    64 * 1024,
    1024 * 1024,
    16 * 1024 * 1024,
    64 * 1024 * 1024,
];

fn label(size: usize) -> String {
    if size >= 1024 * 1024 {
        format!("{}MiB", size / (1024 * 1024))
    } else {
        format!("{}KiB", size / 1024)
    }
}

/// Runs one benchmark per size of [`SIZES`] in group `name`, with that size's byte throughput.
/// `setup` (untimed) prepares a size and returns the routine that is timed.
fn per_size<S, R>(c: &mut Criterion, name: &str, mut setup: S)
where
    S: FnMut(usize) -> R,
    R: FnMut(&mut Bencher<'_>),
{
    let mut group = c.benchmark_group(name);
    for size in SIZES {
        let mut routine = setup(size);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::from_parameter(label(size)), |b| routine(b));
    }
    group.finish();
}

fn raw_ring_seal(c: &mut Criterion) {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7; 32]).unwrap());
    per_size(c, "raw_ring_seal", |size| {
        let mut buf = vec![0u8; size];
        let key = &key;
        move |b: &mut Bencher<'_>| {
            b.iter(|| {
                for (i, chunk) in buf.chunks_mut(SEG).enumerate() {
                    let mut nonce = [0u8; 12];
                    nonce[..8].copy_from_slice(&(i as u64).to_be_bytes());
                    let tag = key
                        .seal_in_place_separate_tag(
                            Nonce::assume_unique_for_key(nonce),
                            Aad::empty(),
                            chunk,
                        )
                        .unwrap();
                    let _ = black_box(tag);
                }
            })
        }
    });
}

/// A stored single-run object of `size` bytes of plaintext, with its key.
struct Fixture {
    kek: Kek,
    id: KeyId,
    plain: Vec<u8>,
    stored: Vec<u8>,
}

impl Fixture {
    fn new(size: usize) -> Self {
        let mut fixture = Fixture {
            kek: Kek::from_bytes([1; 32]),
            id: KeyId::new("bench", 1).unwrap(),
            plain: vec![0x5a; size],
            stored: Vec::new(),
        };
        let (cipher, mut stored) = fixture.new_object();
        let mut enc = cipher.encryptor(0);
        enc.push(&fixture.plain, &mut stored).unwrap();
        enc.finish(&mut stored).unwrap();
        fixture.stored = stored;
        fixture
    }

    fn context(&self) -> DekContext<'_> {
        DekContext {
            key: &self.id,
            bucket: "b",
            object: "o",
        }
    }

    /// A new object under the fixture's key: its cipher and header bytes.
    fn new_object(&self) -> (ObjectCipher, Vec<u8>) {
        format::new_object(&self.kek, &self.context(), Layout::Single).unwrap()
    }

    /// Opens the stored object: its cipher and header length.
    fn open(&self) -> (ObjectCipher, usize) {
        let prefix = &self.stored[..format::MAX_HEADER_LEN.min(self.stored.len())];
        format::open_object(&self.kek, &self.context(), prefix).unwrap()
    }
}

/// Times `routine` on the stored object of each size; `out` is emptied before each iteration.
fn per_object(c: &mut Criterion, name: &str, routine: impl Fn(&Fixture, &mut Vec<u8>)) {
    let routine = &routine;
    per_size(c, name, |size| {
        let fixture = Fixture::new(size);
        let mut out = Vec::with_capacity(fixture.stored.len());
        move |b: &mut Bencher<'_>| {
            b.iter(|| {
                out.clear();
                routine(&fixture, &mut out);
                black_box(out.len());
            })
        }
    });
}

fn stream_encrypt(c: &mut Criterion) {
    per_object(c, "stream_encrypt", |fixture, out| {
        let (cipher, header) = fixture.new_object();
        out.extend_from_slice(&header);
        let mut enc = cipher.encryptor(0);
        // Feed in 1 MiB pieces, as a body stream would arrive.
        for piece in fixture.plain.chunks(1 << 20) {
            enc.push(piece, out).unwrap();
        }
        enc.finish(out).unwrap();
    });
}

/// The object is opened (header, key unwrap) outside the timed loop, as in
/// `stream_decrypt_in_place`, so the two differ only in the API.
fn stream_decrypt(c: &mut Criterion) {
    per_size(c, "stream_decrypt", |size| {
        let fixture = Fixture::new(size);
        let (cipher, _) = fixture.open();
        let stored_len = fixture.stored.len() as u64;
        let mut out = Vec::with_capacity(fixture.stored.len());
        move |b: &mut Bencher<'_>| {
            let layout = cipher.single_layout(stored_len).unwrap();
            b.iter(|| {
                out.clear();
                let (range, mut dec) = layout.decryptor(0..layout.plaintext_len()).unwrap();
                let ciphertext = &fixture.stored[range.start as usize..range.end as usize];
                for piece in ciphertext.chunks(1 << 20) {
                    dec.push(piece, &mut out).unwrap();
                }
                dec.finish().unwrap();
                black_box(out.len());
            })
        }
    });
}

/// The copy `push` cannot avoid (ring seals and opens in place only): the plaintext copied
/// segment by segment into the output, with room for the tags, and nothing sealed. Together
/// with `raw_ring_seal` it bounds what `push` can reach: 1 / (1 / seal + 1 / copy).
fn push_copy_only(c: &mut Criterion) {
    per_object(c, "push_copy_only", |fixture, out| {
        for segment in fixture.plain.chunks(SEG) {
            out.extend_from_slice(segment);
            out.extend_from_slice(&[0; 16]);
        }
    });
}

/// The zero-copy path the proxy uses: segments live in caller-owned buffers and are sealed in
/// place, tags kept beside them (scatter-gather to storage).
fn stream_encrypt_in_place(c: &mut Criterion) {
    per_size(c, "stream_encrypt_in_place", |size| {
        let fixture = Fixture::new(size);
        let mut segments: Vec<Vec<u8>> = fixture.plain.chunks(SEG).map(<[u8]>::to_vec).collect();
        let mut last = if size % SEG == 0 {
            Vec::new()
        } else {
            segments.pop().unwrap()
        };
        let mut tags = Vec::with_capacity(segments.len() + 1);
        move |b: &mut Bencher<'_>| {
            b.iter(|| {
                tags.clear();
                let (cipher, header) = fixture.new_object();
                let mut enc = cipher.encryptor(0);
                for segment in &mut segments {
                    tags.push(enc.seal_segment_in_place(segment).unwrap());
                }
                tags.push(enc.finish_in_place(&mut last).unwrap().0);
                black_box((header.len(), tags.len()));
            })
        }
    });
}

fn stream_decrypt_in_place(c: &mut Criterion) {
    per_size(c, "stream_decrypt_in_place", |size| {
        let fixture = Fixture::new(size);
        let (cipher, header_len) = fixture.open();
        // Ciphertext segments as they would arrive in owned buffers from storage.
        let stride = SEG + 16;
        let originals: Vec<Vec<u8>> = fixture.stored[header_len..]
            .chunks(stride)
            .map(<[u8]>::to_vec)
            .collect();
        let stored_len = fixture.stored.len() as u64;
        move |b: &mut Bencher<'_>| {
            let layout = cipher.single_layout(stored_len).unwrap();
            // Opening in place consumes the ciphertext, so each iteration gets a fresh copy
            // from the (untimed) setup closure.
            b.iter_batched(
                || originals.clone(),
                |mut work| {
                    let (_, mut dec) = layout.decryptor(0..layout.plaintext_len()).unwrap();
                    let mut emitted = 0usize;
                    for segment in &mut work {
                        emitted += dec.open_in_place(segment).unwrap().len();
                    }
                    dec.finish().unwrap();
                    black_box(emitted);
                    work
                },
                criterion::BatchSize::LargeInput,
            )
        }
    });
}

fn segment(c: &mut Criterion) {
    let fixture = Fixture::new(SEG + 1);
    let (cipher, _) = fixture.open();
    let stored = &fixture.stored;
    let layout = cipher.single_layout(stored.len() as u64).unwrap();
    let mut group = c.benchmark_group("segment");
    group.throughput(Throughput::Bytes(SEG as u64));
    let plain = vec![0u8; SEG];
    let mut out = Vec::with_capacity(2 * SEG);
    group.bench_function("seal_64KiB", |b| {
        b.iter(|| {
            out.clear();
            let mut enc = cipher.encryptor(0);
            enc.push(&plain, &mut out).unwrap();
            enc.finish(&mut out).unwrap();
            black_box(out.len());
        })
    });
    let (range, _) = layout.decryptor(0..SEG as u64).unwrap();
    let first_segment = stored[range.start as usize..range.end as usize].to_vec();
    group.bench_function("open_64KiB", |b| {
        b.iter(|| {
            out.clear();
            let (_, mut dec) = layout.decryptor(0..SEG as u64).unwrap();
            dec.push(&first_segment, &mut out).unwrap();
            dec.finish().unwrap();
            black_box(out.len());
        })
    });
    group.finish();
}

fn shamir_and_commitment(c: &mut Criterion) {
    let id = KeyId::new("bench", 1).unwrap();
    let tmk = generate_tmk().unwrap();
    let mut group = c.benchmark_group("shamir");
    for (k, n) in [(2u8, 2usize), (3, 5)] {
        let names: Vec<String> = (0..n).map(|i| format!("h{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        group.bench_function(format!("split_{k}_of_{n}"), |b| {
            b.iter(|| black_box(shamir::split(&tmk, &id, k, &refs).unwrap()))
        });
        let (meta, shares) = shamir::split(&tmk, &id, k, &refs).unwrap();
        let chosen: Vec<_> = shares.iter().take(usize::from(k)).collect();
        group.bench_function(format!("combine_{k}_of_{n}_with_checks"), |b| {
            b.iter(|| black_box(shamir::combine(&meta, &chosen).unwrap()))
        });
    }
    group.finish();
    let commitment = commit(&tmk, &id).unwrap();
    c.bench_function("commitment_verify", |b| {
        b.iter(|| verify_commitment(&tmk, &id, &commitment).unwrap())
    });
}

/// Per-object threshold OPRF (issue 12, not yet wired in): one holder's evaluation (one
/// scalar multiplication plus a DLEQ proof) and the proxy's verify-then-combine, so the cost
/// can be set against today's whole-key combine above.
fn oprf(c: &mut Criterion) {
    let identity = oprf::ObjectIdentity {
        tenant: "bench".into(),
        key_version: 1,
        bucket: "bucket".into(),
        key: "some/object/key".into(),
        id: oprf::ObjectId([7; 32]),
    };
    let key = oprf::OprfKey::random().unwrap();
    let mut group = c.benchmark_group("oprf");
    for (t, n) in [(2usize, 2usize), (2, 3)] {
        let (shares, _) = oprf::split(&key, t, n).unwrap();
        group.bench_function(format!("evaluate_{t}_of_{n}"), |b| {
            b.iter(|| black_box(oprf::evaluate(&shares[0], &identity).unwrap()))
        });
        let answers: Vec<_> = shares
            .iter()
            .take(t)
            .map(|s| {
                (
                    s.index(),
                    s.public_key(),
                    oprf::evaluate(s, &identity).unwrap(),
                )
            })
            .collect();
        group.bench_function(format!("verify_and_combine_{t}_of_{n}"), |b| {
            b.iter(|| black_box(oprf::verify_and_combine(&identity, &answers, t).unwrap()))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(2)).warm_up_time(std::time::Duration::from_millis(500));
    targets = raw_ring_seal, stream_encrypt, stream_decrypt, push_copy_only, stream_encrypt_in_place, stream_decrypt_in_place, segment, shamir_and_commitment, oprf
}
criterion_main!(benches);
