//! Replays every committed fuzz corpus (`fuzz/corpus/<target>/`) through the same functions the
//! cargo-fuzz targets run (`treuhand::fuzzing`), on stable, so CI exercises the seeds, the
//! inputs the fuzzer found interesting and every crash that was fixed. See docs/fuzzing.md.
// Tests assert with expect/panic by design.
#![allow(clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use treuhand::fuzzing;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    for path in &files {
        let data = std::fs::read(path).expect("corpus file");
        // A panic names the file, so a failure here reproduces with
        // `cargo +nightly fuzz run <target> <file>`.
        eprintln!("{target}: {}", path.display());
        run(&data);
    }
}

#[test]
fn format_header_corpus_replays() {
    replay("format_header", fuzzing::format_header);
}

#[test]
fn format_layout_corpus_replays() {
    replay("format_layout", fuzzing::format_layout);
}

#[test]
fn segment_decrypt_corpus_replays() {
    replay("segment_decrypt", fuzzing::segment_decrypt);
}

#[test]
fn share_encodings_corpus_replays() {
    replay("share_encodings", fuzzing::share_encodings);
}

#[test]
fn trustee_json_corpus_replays() {
    replay("trustee_json", fuzzing::trustee_json);
}

#[test]
fn aws_chunked_corpus_replays() {
    replay("aws_chunked", fuzzing::aws_chunked);
}

#[test]
fn range_conditions_corpus_replays() {
    replay("range_conditions", fuzzing::range_conditions);
}
