#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| onem2m_sa_integration::fuzz_checks::primitive_binary(data));
