//! Opens a TCP connection through std, so its component imports
//! `wasi:sockets`; the host must refuse or sandbox it.

use sighost_sdk::{Context, HandlerError, Signal, handler};

#[handler]
fn handle_signal(_signal: Signal, _tenant: String, _context: Context) -> Result<(), HandlerError> {
    let _ = std::hint::black_box(std::net::TcpStream::connect("127.0.0.1:9"));
    Ok(())
}
