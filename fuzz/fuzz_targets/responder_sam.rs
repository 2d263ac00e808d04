#![no_main]

use libfuzzer_sys::fuzz_target;
use onem2m_sa_integration::fuzz_checks::{ResponderInput, responder_sam_ops};

// Structured: libfuzzer-sys builds the input with `ResponderInput::arbitrary_take_rest`, exactly as
// `fuzz_checks::responder_sam` (which the corpus replay calls) does from the raw bytes.
fuzz_target!(|input: ResponderInput| {
    responder_sam_ops(&input.ops);
});
