//! Opens a TCP connection through std, so its component imports
//! `wasi:sockets`; the host must refuse it at load or, when a test lets the
//! import through, deny the connection. It connects to `port` of its
//! manifest's options on 127.0.0.1, writes the error it got to stderr and
//! succeeds, or fails permanently if the connection was made.

use std::io::Write;

use sighost_sdk::{Context, HandlerError, Signal, handler};

#[handler]
fn handle_signal(_signal: Signal, _tenant: String, context: Context) -> Result<(), HandlerError> {
    let options: serde_json::Value = context.options()?;
    let port = options["port"].as_u64().unwrap_or(9);
    match std::net::TcpStream::connect(("127.0.0.1", port as u16)) {
        Ok(_) => Err(HandlerError::permanent(format!("connected to port {port}"))),
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "connect failed: {error}");
            Ok(())
        }
    }
}
