//! Uses the network through std, so its component imports `wasi:sockets`;
//! the host loads it (language runtimes import the interface too) and the
//! WASI context must deny every use. It tries a TCP connection to `port` of
//! its manifest's options on 127.0.0.1, a UDP socket, and a name lookup;
//! writes each error it got to stderr and succeeds, or fails permanently
//! naming what worked.

use std::io::Write;
use std::net::ToSocketAddrs;

use sighost_sdk::{Context, HandlerError, Signal, handler};

#[handler]
fn handle_signal(_signal: Signal, _tenant: String, context: Context) -> Result<(), HandlerError> {
    let options: serde_json::Value = context.options()?;
    let port = options["port"].as_u64().unwrap_or(9) as u16;
    let mut worked = Vec::new();
    let mut stderr = std::io::stderr();
    match std::net::TcpStream::connect(("127.0.0.1", port)) {
        Ok(_) => worked.push(format!("connected to port {port}")),
        Err(error) => {
            let _ = writeln!(stderr, "connect failed: {error}");
        }
    }
    match std::net::UdpSocket::bind("127.0.0.1:0") {
        Ok(_) => worked.push("bound a UDP socket".to_owned()),
        Err(error) => {
            let _ = writeln!(stderr, "udp bind failed: {error}");
        }
    }
    match ("localhost", port).to_socket_addrs() {
        Ok(found) => worked.push(format!("looked up localhost: {:?}", found.collect::<Vec<_>>())),
        Err(error) => {
            let _ = writeln!(stderr, "lookup failed: {error}");
        }
    }
    if worked.is_empty() {
        Ok(())
    } else {
        Err(HandlerError::permanent(worked.join("; ")))
    }
}
