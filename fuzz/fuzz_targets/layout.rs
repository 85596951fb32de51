//! See `readthrough_fuzz::layout`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| readthrough_fuzz::layout(data));
