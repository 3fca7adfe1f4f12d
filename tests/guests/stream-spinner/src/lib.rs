//! Loops forever on blocking stream calls: reads stdin (empty) and writes
//! stdout with a flush, each a host call that returns at once. The wall-clock
//! limit must end it, and its captured output must stay bounded.

use std::io::{Read, Write};

use sighost_sdk::{Context, HandlerError, Signal, handler};

#[handler]
fn handle_signal(_signal: Signal, _tenant: String, _context: Context) -> Result<(), HandlerError> {
    let mut buffer = [0u8; 4096];
    let mut stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    loop {
        let read = stdin.read(&mut buffer).unwrap_or(0);
        let _ = stdout.write_all(format!("read {read} bytes\n").as_bytes());
        let _ = stdout.flush();
    }
}
