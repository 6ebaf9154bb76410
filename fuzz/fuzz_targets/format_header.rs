#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| treuhand::fuzzing::format_header(data));
