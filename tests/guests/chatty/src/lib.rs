//! Writes 1 MiB to stdout and a bearer token to stderr, to exercise the host's
//! output capture limits and its redaction of credentials in logs.

use std::io::Write;

use sighost_sdk::{Context, HandlerError, Signal, handler};

#[handler]
fn handle_signal(_signal: Signal, _tenant: String, _context: Context) -> Result<(), HandlerError> {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "hello from chatty");
    // 64-byte lines (63 characters and a newline), 16384 of them: 1 MiB.
    let line = format!("{:-<63}\n", "chatty filler ");
    for _ in 0..(1 << 20) / line.len() {
        let _ = stdout.write_all(line.as_bytes());
    }
    let _ = stdout.flush();
    let _ = writeln!(
        std::io::stderr(),
        "Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345"
    );
    Ok(())
}
