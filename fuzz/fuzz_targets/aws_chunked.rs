#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| treuhand::fuzzing::aws_chunked(data));
