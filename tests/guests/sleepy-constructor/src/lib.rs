//! Sleeps 60 s inside a host call from a static constructor. On wasm32-wasip2
//! the linker runs a cdylib's constructors when an export is first called,
//! so the wait happens inside the invocation: the handler's wall-clock limit
//! must end it there. (A wait in a core start function, which runs during
//! instantiation, is `tests/components/sleepy-start.wat`.)

use std::time::Duration;

use sighost_sdk::{Context, HandlerError, Signal, handler};

extern "C" fn sleep() {
    std::thread::sleep(Duration::from_secs(60));
}

// The linker calls every `.init_array` entry from `__wasm_call_ctors`.
#[used]
#[unsafe(link_section = ".init_array")]
static SLEEP_AT_START: extern "C" fn() = sleep;

#[handler]
fn handle_signal(_signal: Signal, _tenant: String, _context: Context) -> Result<(), HandlerError> {
    Ok(())
}
