//! Recurses without bound, so the invocation ends in a stack overflow trap
//! that the host must contain.

use sighost_sdk::{Context, HandlerError, Signal, handler};

#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    // A frame-local buffer and black_box on both sides of the call keep the
    // recursion from becoming a loop or a tail call.
    let frame = std::hint::black_box([depth; 16]);
    let below = recurse(std::hint::black_box(depth + 1));
    std::hint::black_box(below.wrapping_add(frame[(depth % 16) as usize]))
}

#[handler]
fn handle_signal(_signal: Signal, _tenant: String, _context: Context) -> Result<(), HandlerError> {
    std::hint::black_box(recurse(0));
    Ok(())
}
