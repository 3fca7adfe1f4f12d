//! Allocates and touches 1 MiB chunks until allocation fails, so the host's
//! memory limit must be what ends the invocation. Never returns normally.

use sighost_sdk::{Context, HandlerError, Signal, handler};

const CHUNK: usize = 1 << 20;

#[handler]
fn handle_signal(_signal: Signal, _tenant: String, _context: Context) -> Result<(), HandlerError> {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        // A non-zero fill writes every page, so the memory is really committed.
        let chunk = vec![0xA5u8; CHUNK];
        chunks.push(std::hint::black_box(chunk));
        std::hint::black_box(&chunks);
    }
}
