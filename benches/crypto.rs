//! Crypto-core and object-format micro-benchmarks.
//!
//! `raw_ring_seal` is the baseline: ring's AES-256-GCM sealing 64 KiB chunks in place, with no
//! framing and no copies. The streaming encryptor and decryptor are compared against it in the
//! same run (see docs/benchmarks.md for the ratio).
// Benchmarks unwrap: a failure is a broken benchmark, not a condition to handle.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use treuhand::crypto::envelope::{commit, generate_tmk, verify_commitment};
use treuhand::crypto::{DekContext, KeyId, shamir};
use treuhand::format::{self, Layout};
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

fn raw_ring_seal(c: &mut Criterion) {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7; 32]).unwrap());
    let mut group = c.benchmark_group("raw_ring_seal");
    for size in SIZES {
        let mut buf = vec![0u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::from_parameter(label(size)), |b| {
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
        });
    }
    group.finish();
}

fn object(size: usize) -> (Kek, KeyId, Vec<u8>, Vec<u8>) {
    let kek = Kek::from_bytes([1; 32]);
    let id = KeyId::new("bench", 1).unwrap();
    let plain = vec![0x5a; size];
    let ctx = DekContext {
        key: &id,
        bucket: "b",
        object: "o",
    };
    let (cipher, mut stored) = format::new_object(&kek, &ctx, Layout::Single).unwrap();
    let mut enc = cipher.encryptor(0);
    enc.push(&plain, &mut stored).unwrap();
    enc.finish(&mut stored).unwrap();
    (kek, id, plain, stored)
}

fn stream_encrypt(c: &mut Criterion) {
    let mut group = c.benchmark_group("stream_encrypt");
    for size in SIZES {
        let (kek, id, plain, stored) = object(size);
        let ctx = DekContext {
            key: &id,
            bucket: "b",
            object: "o",
        };
        let mut out = Vec::with_capacity(stored.len());
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::from_parameter(label(size)), |b| {
            b.iter(|| {
                out.clear();
                let (cipher, header) = format::new_object(&kek, &ctx, Layout::Single).unwrap();
                out.extend_from_slice(&header);
                let mut enc = cipher.encryptor(0);
                // Feed in 1 MiB pieces, as a body stream would arrive.
                for piece in plain.chunks(1 << 20) {
                    enc.push(piece, &mut out).unwrap();
                }
                enc.finish(&mut out).unwrap();
                black_box(out.len());
            })
        });
    }
    group.finish();
}

fn stream_decrypt(c: &mut Criterion) {
    let mut group = c.benchmark_group("stream_decrypt");
    for size in SIZES {
        let (kek, id, plain, stored) = object(size);
        let ctx = DekContext {
            key: &id,
            bucket: "b",
            object: "o",
        };
        let mut out = Vec::with_capacity(plain.len());
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::from_parameter(label(size)), |b| {
            b.iter(|| {
                out.clear();
                let (cipher, _) = format::open_object(
                    &kek,
                    &ctx,
                    &stored[..format::MAX_HEADER_LEN.min(stored.len())],
                )
                .unwrap();
                let layout = cipher.single_layout(stored.len() as u64).unwrap();
                let (range, mut dec) = layout.decryptor(0..layout.plaintext_len()).unwrap();
                for piece in stored[range.start as usize..range.end as usize].chunks(1 << 20) {
                    dec.push(piece, &mut out).unwrap();
                }
                dec.finish().unwrap();
                black_box(out.len());
            })
        });
    }
    group.finish();
}

fn segment(c: &mut Criterion) {
    let (kek, id, _, stored) = object(SEG + 1);
    let ctx = DekContext {
        key: &id,
        bucket: "b",
        object: "o",
    };
    let (cipher, _) = format::open_object(&kek, &ctx, &stored).unwrap();
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

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(2)).warm_up_time(std::time::Duration::from_millis(500));
    targets = raw_ring_seal, stream_encrypt, stream_decrypt, segment, shamir_and_commitment
}
criterion_main!(benches);
