#![no_main]

use libfuzzer_sys::fuzz_target;
use onem2m_sa_integration::fuzz_checks::{InitiatorInput, initiator_sam_ops};

// Structured: libfuzzer-sys builds the input with `InitiatorInput::arbitrary_take_rest`, exactly as
// `fuzz_checks::initiator_sam` (which the corpus replay calls) does from the raw bytes.
fuzz_target!(|input: InitiatorInput| {
    initiator_sam_ops(&input.ops);
});
