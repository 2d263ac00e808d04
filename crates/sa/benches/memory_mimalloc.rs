//! The memory bench (`memory.rs`, same figures and modes) with mimalloc as the global allocator,
//! as the sidecar binary links it: `cargo bench -p onem2m-sa --bench memory_mimalloc`.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "memory.rs"]
mod memory;

fn main() {
    memory::main();
}
