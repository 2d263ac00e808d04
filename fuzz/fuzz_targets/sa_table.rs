#![no_main]

use libfuzzer_sys::fuzz_target;
use onem2m_sa_integration::fuzz_checks::{TableInput, sa_table_ops};

// Structured: libfuzzer-sys builds the input with `TableInput::arbitrary_take_rest`, exactly as
// `fuzz_checks::sa_table` (which the corpus replay calls) does from the raw bytes.
fuzz_target!(|input: TableInput| {
    sa_table_ops(&input.ops);
});
