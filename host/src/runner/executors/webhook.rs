//! `type = "webhook"`: POSTs the directive, signed, to a URL.

use std::io::Read;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use ureq::http::{HeaderValue, Uri};

use super::{WebhookConfig, describe};
use crate::runner::executor::{Executor, ExecutorError, directive_document};
use crate::store::Directive;

/// How much of a successful answer is read as the result. A longer one is
/// not kept (the status is recorded instead): the result is stored with the
/// directive, and the directive payload limit is the same.
const RESULT_LIMIT: u64 = 64 * 1024;

/// How much of a refusal's body an error message quotes.
const ERROR_BODY_LIMIT: u64 = 512;

/// POSTs [`directive_document`] as JSON, with `Idempotency-Key` (the
/// directive's) and `Sighost-Signature: sha256=<hex HMAC-SHA256 of the body>`
/// so the receiver can deduplicate and authenticate.
///
/// 2xx is success; 408, 429, 5xx, timeouts and connection errors are worth
/// another attempt; any other answer is a refusal that will not change.
/// Redirects are not followed: the signed body is meant for the configured
/// URL only.
pub struct WebhookExecutor {
    url: String,
    /// Keyed once with the secret; cloned per request.
    mac: Hmac<Sha256>,
    agent: ureq::Agent,
    timeout: Duration,
}

/// Written by hand: the keyed MAC is the secret.
impl std::fmt::Debug for WebhookExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookExecutor")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl WebhookExecutor {
    pub fn new(config: &WebhookConfig) -> Result<Self, String> {
        let url = &config.url;
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("webhook URL {url:?} does not parse: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            // ureq is built without TLS here (default features off), so an
            // https URL would fail on every attempt; say so now instead.
            Some("https") => {
                return Err(format!(
                    "webhook URL {url:?}: https is not available in this build (ureq has no TLS feature enabled)"
                ));
            }
            _ => {
                return Err(format!(
                    "webhook URL {url:?} must start with http:// or https://"
                ));
            }
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(format!("webhook URL {url:?} has no host"));
        }
        if config.secret.is_empty() {
            return Err(format!(
                "webhook {url}: secret is empty; it is the key of Sighost-Signature"
            ));
        }
        if config.timeout_ms == 0 {
            return Err(format!("webhook {url}: timeout_ms must be at least 1"));
        }
        let mac = Hmac::<Sha256>::new_from_slice(config.secret.as_bytes())
            .map_err(|e| format!("webhook {url}: unusable secret: {e}"))?;
        let timeout = Duration::from_millis(config.timeout_ms);
        let agent = ureq::Agent::config_builder()
            // Statuses are classified below, not turned into errors.
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(timeout))
            .build()
            .new_agent();
        Ok(Self {
            url: url.clone(),
            mac,
            agent,
            timeout,
        })
    }

    fn signature(&self, body: &[u8]) -> String {
        let mut mac = self.mac.clone();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }
}

impl Executor for WebhookExecutor {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn execute(&self, directive: &Directive) -> Result<Value, ExecutorError> {
        let url = &self.url;
        let about = describe(directive);
        let key = HeaderValue::from_str(&directive.idempotency_key).map_err(|_| {
            ExecutorError::Permanent(format!(
                "{about}: its idempotency key cannot be sent to {url} as an HTTP header (control characters)"
            ))
        })?;
        let body = directive_document(directive).to_string();

        let sent = self
            .agent
            .post(url)
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", key)
            .header("Sighost-Signature", self.signature(body.as_bytes()))
            .send(body.as_bytes());
        let mut response = match sent {
            Ok(response) => response,
            Err(ureq::Error::Timeout(_)) => {
                return Err(ExecutorError::Retryable(format!(
                    "{about}: webhook {url} timed out after {} ms",
                    self.timeout.as_millis()
                )));
            }
            Err(e) => {
                return Err(ExecutorError::Retryable(format!(
                    "{about}: webhook {url} failed: {e}"
                )));
            }
        };

        let status = response.status().as_u16();
        let mut read_body = |limit: u64| {
            let mut bytes = Vec::new();
            // A body cut short still leaves the status to go by.
            let _ = response
                .body_mut()
                .as_reader()
                .take(limit)
                .read_to_end(&mut bytes);
            bytes
        };
        if (200..300).contains(&status) {
            let bytes = read_body(RESULT_LIMIT + 1);
            let too_long = bytes.len() as u64 > RESULT_LIMIT;
            let answer = if too_long {
                None
            } else {
                serde_json::from_slice(&bytes).ok()
            };
            return Ok(answer.unwrap_or_else(|| json!({"status": status})));
        }
        let message = format!(
            "{about}: webhook {url} answered {status}: {}",
            String::from_utf8_lossy(&read_body(ERROR_BODY_LIMIT)).trim()
        );
        Err(match status {
            408 | 429 | 500..=599 => ExecutorError::Retryable(message),
            _ => ExecutorError::Permanent(message),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::mpsc::{self, Receiver};
    use std::time::Instant;

    use super::super::test_directive;
    use super::*;

    const SECRET: &str = "webhook-test-secret";

    /// One request, as the test server saw it.
    #[derive(Debug)]
    struct Received {
        request_line: String,
        /// Names lowercased.
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        /// Whether `Sighost-Signature` is the HMAC of the body with [`SECRET`].
        signature_valid: bool,
    }

    impl Received {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }
    }

    /// A one-thread HTTP/1.1 server on 127.0.0.1 that answers one request
    /// with `status` and `answer`, and reports what it received.
    fn serve_once(status: u16, answer: &'static str) -> (String, Receiver<Received>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a test port");
        let url = format!(
            "http://{}/hooks/summarize",
            listener.local_addr().expect("local address")
        );
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept the webhook call");
            let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
            let mut request_line = String::new();
            reader
                .read_line(&mut request_line)
                .expect("read the request line");
            let mut headers = Vec::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).expect("read a header");
                let Some((name, value)) = line.trim_end().split_once(':') else {
                    break;
                };
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
            let length = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .map_or(0, |(_, v)| v.parse().expect("a numeric Content-Length"));
            let mut body = vec![0; length];
            reader.read_exact(&mut body).expect("read the body");

            let mut mac =
                Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("HMAC takes any key");
            mac.update(&body);
            let signature_valid = headers
                .iter()
                .find(|(n, _)| n == "sighost-signature")
                .and_then(|(_, v)| v.strip_prefix("sha256="))
                .and_then(|digest| hex::decode(digest).ok())
                .is_some_and(|digest| mac.verify_slice(&digest).is_ok());

            let head = format!(
                "HTTP/1.1 {status} Scripted\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                answer.len()
            );
            stream.write_all(head.as_bytes()).expect("answer the head");
            stream
                .write_all(answer.as_bytes())
                .expect("answer the body");
            let _ = sender.send(Received {
                request_line,
                headers,
                body,
                signature_valid,
            });
        });
        (url, receiver)
    }

    fn executor(url: &str, timeout_ms: u64) -> WebhookExecutor {
        WebhookExecutor::new(&WebhookConfig {
            url: url.into(),
            secret: SECRET.into(),
            timeout_ms,
        })
        .expect("the webhook executor builds")
    }

    fn call(status: u16, answer: &'static str) -> (Result<Value, ExecutorError>, Received) {
        let (url, received) = serve_once(status, answer);
        let result = executor(&url, 5000).execute(&test_directive("forum.thread.summarize"));
        let received = received
            .recv_timeout(Duration::from_secs(5))
            .expect("the server got the call");
        (result, received)
    }

    #[test]
    fn posts_the_signed_directive_and_returns_the_json_answer() {
        let (result, received) = call(200, r#"{"summary_id": 99}"#);
        assert_eq!(result, Ok(json!({"summary_id": 99})));

        let directive = test_directive("forum.thread.summarize");
        assert_eq!(
            received.request_line.trim_end(),
            "POST /hooks/summarize HTTP/1.1"
        );
        assert!(
            received.signature_valid,
            "bad signature: {:?}",
            received.header("sighost-signature")
        );
        assert_eq!(
            received.header("idempotency-key"),
            Some(directive.idempotency_key.as_str())
        );
        assert_eq!(received.header("content-type"), Some("application/json"));
        let body: Value = serde_json::from_slice(&received.body).expect("the body is JSON");
        assert_eq!(body, directive_document(&directive));
    }

    #[test]
    fn returns_the_status_when_the_answer_is_not_json() {
        let (result, received) = call(202, "queued");
        assert_eq!(result, Ok(json!({"status": 202})));
        assert!(received.signature_valid);
    }

    #[test]
    fn retries_when_the_server_answers_500() {
        let (result, _) = call(500, "boom");
        match result {
            Err(ExecutorError::Retryable(message)) => {
                assert!(
                    message.contains("500") && message.contains("/hooks/summarize"),
                    "{message}"
                );
                assert!(message.contains("dir_forum.thread.summarize"), "{message}");
            }
            other => panic!("expected a retryable error, got {other:?}"),
        }
    }

    #[test]
    fn retries_when_the_server_answers_429() {
        let (result, _) = call(429, "slow down");
        assert!(
            matches!(result, Err(ExecutorError::Retryable(_))),
            "{result:?}"
        );
    }

    #[test]
    fn retries_when_the_server_answers_408() {
        let (result, _) = call(408, "");
        assert!(
            matches!(result, Err(ExecutorError::Retryable(_))),
            "{result:?}"
        );
    }

    #[test]
    fn gives_up_when_the_server_answers_404_and_quotes_its_body() {
        let (result, _) = call(404, "no such hook");
        match result {
            Err(ExecutorError::Permanent(message)) => {
                assert!(
                    message.contains("404") && message.contains("no such hook"),
                    "{message}"
                );
            }
            other => panic!("expected a permanent error, got {other:?}"),
        }
    }

    #[test]
    fn gives_up_when_the_server_redirects() {
        let (result, _) = call(302, "");
        assert!(
            matches!(result, Err(ExecutorError::Permanent(_))),
            "{result:?}"
        );
    }

    #[test]
    fn retries_when_the_server_never_answers() {
        // Connections queue in the backlog and are never accepted.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a test port");
        let url = format!(
            "http://{}/hooks/summarize",
            listener.local_addr().expect("local address")
        );

        let started = Instant::now();
        let result = executor(&url, 300).execute(&test_directive("forum.thread.summarize"));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
        match result {
            Err(ExecutorError::Retryable(message)) => {
                assert!(message.contains("timed out after 300 ms"), "{message}");
            }
            other => panic!("expected a retryable error, got {other:?}"),
        }
        drop(listener);
    }

    #[test]
    fn retries_when_nothing_listens() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a test port");
        let url = format!(
            "http://{}/hooks/summarize",
            listener.local_addr().expect("local address")
        );
        drop(listener);
        let result = executor(&url, 2000).execute(&test_directive("forum.thread.summarize"));
        assert!(
            matches!(result, Err(ExecutorError::Retryable(_))),
            "{result:?}"
        );
    }

    #[test]
    fn gives_up_on_an_idempotency_key_that_cannot_be_a_header() {
        let mut directive = test_directive("forum.thread.summarize");
        directive.idempotency_key = "line\nbreak".into();
        let result = executor("http://127.0.0.1:9/hooks", 1000).execute(&directive);
        assert!(
            matches!(result, Err(ExecutorError::Permanent(_))),
            "{result:?}"
        );
    }

    #[test]
    fn never_prints_the_secret() {
        let executor = executor("http://127.0.0.1:9/hooks", 1000);
        assert!(!format!("{executor:?}").contains(SECRET));
    }

    #[test]
    fn refuses_https_because_this_build_has_no_tls() {
        let error = WebhookExecutor::new(&WebhookConfig {
            url: "https://example.com/hook".into(),
            secret: SECRET.into(),
            timeout_ms: 1000,
        })
        .expect_err("https is refused");
        assert!(
            error.contains("https://example.com/hook") && error.contains("TLS"),
            "{error}"
        );
    }
}
