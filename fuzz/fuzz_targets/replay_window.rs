#![no_main]

use libfuzzer_sys::fuzz_target;
use onem2m_sa_integration::fuzz_checks::{WindowInput, replay_window_ops};

// Structured: libfuzzer-sys builds the input with `WindowInput::arbitrary_take_rest`, exactly as
// `fuzz_checks::replay_window` (which the corpus replay calls) does from the raw bytes.
fuzz_target!(|input: WindowInput| replay_window_ops(&input));
