#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| treuhand::fuzzing::trustee_json(data));
