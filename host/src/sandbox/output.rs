//! Guest stdout and stderr, captured into one bounded buffer per invocation.
//!
//! Output past the bound is dropped, not refused: a chatty guest keeps running
//! and the report says the log was truncated. Redaction happens once, when the
//! invocation ends (see `CapturedOutput::take`).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

#[derive(Debug, Default)]
struct Buffer {
    bytes: Vec<u8>,
    capacity: usize,
    truncated: bool,
}

impl Buffer {
    fn append(&mut self, data: &[u8]) {
        let room = self.capacity - self.bytes.len();
        if data.len() > room {
            self.truncated = true;
        }
        self.bytes.extend_from_slice(&data[..data.len().min(room)]);
    }
}

/// A handle on the shared buffer; stdout and stderr each get a clone.
#[derive(Debug, Clone)]
pub(crate) struct CapturedOutput(Arc<Mutex<Buffer>>);

impl CapturedOutput {
    pub fn new(capacity: usize) -> Self {
        Self(Arc::new(Mutex::new(Buffer {
            bytes: Vec::new(),
            capacity,
            truncated: false,
        })))
    }

    fn append(&self, data: &[u8]) {
        // A poisoned lock only means another stream panicked mid-append; the
        // bytes are still a valid prefix, so keep using them.
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .append(data);
    }

    /// The captured text (lossy UTF-8, secrets redacted) and whether any was dropped.
    pub fn take(&self) -> (String, bool) {
        let mut buffer = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let bytes = std::mem::take(&mut buffer.bytes);
        let text = String::from_utf8_lossy(&bytes);
        (crate::secrets::redact(&text).into_owned(), buffer.truncated)
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for CapturedOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always writable: what does not fit is dropped in `append`.
        Ok(64 << 10)
    }
}

impl tokio::io::AsyncWrite for CapturedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
