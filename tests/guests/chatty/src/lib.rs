//! Writes a greeting, `before` bytes of filler to stdout, a bearer token to
//! stderr, then `after` bytes of filler (the manifest's options; by default
//! none before and 1 MiB after): the host's bounded output capture, and its
//! redaction of a credential wherever it falls, also across the cut.

use std::io::Write;

use sighost_sdk::{Context, HandlerError, Signal, handler};

const TOKEN_LINE: &str = "Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345\n";

/// `bytes` of 64-byte lines (63 characters and a newline), the last one cut short.
fn filler(out: &mut impl Write, bytes: usize) {
    let line = format!("{:-<63}\n", "chatty filler ");
    let mut left = bytes;
    while left > 0 {
        let n = left.min(line.len());
        let _ = out.write_all(&line.as_bytes()[..n]);
        left -= n;
    }
    let _ = out.flush();
}

#[handler]
fn handle_signal(_signal: Signal, _tenant: String, context: Context) -> Result<(), HandlerError> {
    let options: serde_json::Value = context.options()?;
    let size = |key: &str, default: usize| options[key].as_u64().map_or(default, |n| n as usize);
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "hello from chatty");
    filler(&mut stdout, size("before", 0));
    let _ = std::io::stderr().write_all(TOKEN_LINE.as_bytes());
    filler(&mut stdout, size("after", 1 << 20));
    Ok(())
}
