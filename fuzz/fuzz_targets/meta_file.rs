//! See `readthrough_fuzz::meta_file`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| readthrough_fuzz::meta_file(data));
