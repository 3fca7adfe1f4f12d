//! Guest stdout and stderr, captured into one bounded buffer per invocation.
//!
//! Output past the bound is dropped, not refused: a chatty guest keeps running
//! and the report says the log was truncated. Redaction happens once, when the
//! invocation ends (see `CapturedOutput::take`), on the kept bytes and a margin
//! past the bound, and only then is the text cut to the bound: a credential
//! that straddles the bound is seen whole, redacted, and cut after, so no
//! prefix of it survives the cut.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Bytes kept past the bound so that redaction sees a credential cut by the
/// bound whole: longer than any secret pattern's shortest match (see
/// `secrets::redact`), and a token longer than this is still matched by its
/// first part.
const REDACTION_MARGIN: usize = 4096;

#[derive(Debug, Default)]
struct Buffer {
    bytes: Vec<u8>,
    /// What the report keeps at most.
    capacity: usize,
    /// Bytes past the margin were dropped.
    overflowed: bool,
}

impl Buffer {
    fn append(&mut self, data: &[u8]) {
        let room = (self.capacity + REDACTION_MARGIN).saturating_sub(self.bytes.len());
        self.bytes.extend_from_slice(&data[..data.len().min(room)]);
        self.overflowed |= data.len() > room;
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
            overflowed: false,
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

    /// The captured text (lossy UTF-8, secrets redacted, at most the
    /// capacity in bytes) and whether any was dropped.
    pub fn take(&self) -> (String, bool) {
        let mut buffer = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut bytes = std::mem::take(&mut buffer.bytes);
        if buffer.overflowed {
            // The margin's end cut whatever was written there: end at the
            // last whitespace past the bound, so that no fragment of a
            // credential too short to be recognised is kept (redaction may
            // shorten the text before it and bring it within the bound).
            if let Some(end) = bytes
                .iter()
                .rposition(u8::is_ascii_whitespace)
                .filter(|end| *end >= buffer.capacity)
            {
                bytes.truncate(end);
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        let mut text = crate::secrets::redact(&text).into_owned();
        let truncated = buffer.overflowed || text.len() > buffer.capacity;
        if text.len() > buffer.capacity {
            let mut cut = buffer.capacity;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        (text, truncated)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_truncation_when_the_text_kept_was_cut() {
        let output = CapturedOutput::new(64);
        output.append(b"password=x password=y");
        assert!(!output.take().1, "fits, redacted too");

        // 21 bytes fit the bound, but redacted they are 38.
        let output = CapturedOutput::new(32);
        output.append(b"password=x password=y");
        let (text, truncated) = output.take();
        assert_eq!((text.len(), truncated), (32, true), "{text}");

        let output = CapturedOutput::new(32);
        output.append(&[b'a'; 40]);
        let (text, truncated) = output.take();
        assert_eq!((text.len(), truncated), (32, true));
    }

    #[test]
    fn no_fragment_of_a_token_cut_by_the_margin_is_kept() {
        // The margin's end falls 8 characters into the token, after a
        // private key that redaction shrinks to its marker: that would pull
        // the fragment within the bound.
        let capacity = 64;
        let line = "Authorization: Bearer ";
        let (begin, end) = ("-----BEGIN PRIVATE KEY-----", "-----END PRIVATE KEY-----\n");
        let key_len = capacity + REDACTION_MARGIN - line.len() - 8;
        let key = format!(
            "{begin}{}{end}",
            "k".repeat(key_len - begin.len() - end.len())
        );
        let output = CapturedOutput::new(capacity);
        output.append(key.as_bytes());
        output.append(format!("{line}abcdefghijklmnopqrstuvwxyz").as_bytes());
        let (text, truncated) = output.take();
        assert!(truncated);
        assert!(text.contains("[REDACTED PRIVATE KEY]"), "{text}");
        assert!(!text.contains("abc"), "{text}");
    }
}
