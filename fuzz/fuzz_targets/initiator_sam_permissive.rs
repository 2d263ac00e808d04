#![no_main]

use libfuzzer_sys::fuzz_target;
use onem2m_sa::crypto::fuzzing::permissive;
use onem2m_sa_integration::fuzz_checks::{InitiatorInput, initiator_sam_ops};

// `initiator_sam` with the fuzzing-only crypto switch on: signatures and MACs pass, so arbitrary
// messages reach the states behind them (not only the recorded ones). The same invariants hold.
fuzz_target!(|input: InitiatorInput| {
    permissive(|| initiator_sam_ops(&input.ops));
});
