//! The built-in executors and the configuration that picks one per
//! directive name:
//!
//! - [`LogExecutor`] (`type = "log"`): appends the directive to a JSON-lines
//!   file or stdout; an audit trail, and the simplest way to see what
//!   handlers ask for.
//! - [`CommandExecutor`] (`type = "command"`): runs a program with the
//!   directive on stdin.
//! - [`WebhookExecutor`] (`type = "webhook"`): POSTs the directive, signed,
//!   to a URL.
//!
//! Each one hands the outside world [`directive_document`] and the
//! directive's idempotency key, since every executor is called at least once
//! per directive.
//!
//! [`directive_document`]: super::executor::directive_document

mod command;
mod log;
mod webhook;

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

pub use command::CommandExecutor;
pub use log::LogExecutor;
pub use webhook::WebhookExecutor;

use super::executor::Executor;
use crate::store::Directive;

/// How one directive name is performed, as written in the host's TOML
/// configuration (`[executors."mail.send"]`), tagged by `type`.
///
/// Each variant's fields refuse unknown keys, so a misspelt option is an
/// error at start-up rather than a silently ignored setting.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ExecutorConfig {
    Log(LogConfig),
    Command(CommandConfig),
    Webhook(WebhookConfig),
}

/// `type = "log"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// The JSON-lines file to append to; stdout when absent.
    #[serde(default)]
    pub path: Option<PathBuf>,
}

/// `type = "command"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandConfig {
    pub program: PathBuf,
    #[serde(default)]
    pub args: Vec<String>,
    /// The child is killed after this long.
    #[serde(default = "CommandConfig::default_timeout_ms")]
    pub timeout_ms: u64,
}

impl CommandConfig {
    fn default_timeout_ms() -> u64 {
        30_000
    }
}

/// `type = "webhook"`.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// An `http` or `https` URL.
    pub url: String,
    /// The HMAC-SHA256 key the receiver checks `Sighost-Signature` with.
    pub secret: String,
    /// For the whole exchange: connecting, sending, and reading the answer.
    #[serde(default = "WebhookConfig::default_timeout_ms")]
    pub timeout_ms: u64,
}

impl WebhookConfig {
    fn default_timeout_ms() -> u64 {
        10_000
    }
}

/// Written by hand so that printing the configuration never prints the key.
impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// Builds the executor a configuration describes, checking it first: the
/// error says what is wrong and names the URL, program or file involved.
pub fn build(config: &ExecutorConfig) -> Result<Arc<dyn Executor>, String> {
    Ok(match config {
        ExecutorConfig::Log(config) => Arc::new(LogExecutor::new(config)?),
        ExecutorConfig::Command(config) => Arc::new(CommandExecutor::new(config)?),
        ExecutorConfig::Webhook(config) => Arc::new(WebhookExecutor::new(config)?),
    })
}

/// How executor errors name the directive they are about.
fn describe(directive: &Directive) -> String {
    format!("directive {} ({})", directive.name, directive.id)
}

/// A directive for the executors' tests.
#[cfg(test)]
fn test_directive(name: &str) -> Directive {
    use crate::store::DirectiveState;
    // Pinned, so a test can rebuild the same directive and compare.
    let now = chrono::DateTime::from_timestamp(1_790_000_000, 0).expect("a valid timestamp");
    Directive {
        id: format!("dir_{name}"),
        tenant: "org_acme".into(),
        name: name.into(),
        payload: serde_json::json!({"thread_id": 42, "note": "hello"}),
        idempotency_key: format!("key-{name}"),
        state: DirectiveState::Running,
        signal_id: "sig_1".into(),
        delivery_id: 7,
        handler: "summarizer".into(),
        scheduled_at: now,
        attempt: 1,
        last_error: None,
        result: None,
        depth: 0,
        inserted_at: now,
        updated_at: now,
    }
}

/// A path in the temp directory no other test (or test run) uses.
#[cfg(test)]
fn temp_path(label: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("sighost-{label}-{}-{n}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[derive(Debug, Deserialize)]
    struct HostConfig {
        executors: BTreeMap<String, ExecutorConfig>,
    }

    fn parse(text: &str) -> Result<BTreeMap<String, ExecutorConfig>, String> {
        toml::from_str::<HostConfig>(text)
            .map(|c| c.executors)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn parses_each_executor_type_with_its_defaults() {
        let executors = parse(
            r#"
            [executors."forum.thread.summarize"]
            type = "webhook"
            url = "http://127.0.0.1:8080/hooks/summarize"
            secret = "s3cret"

            [executors."audit.record"]
            type = "log"
            path = "audit.jsonl"

            [executors."audit.stdout"]
            type = "log"

            [executors."mail.send"]
            type = "command"
            program = "/usr/local/bin/send-mail"
            args = ["--fast"]
            "#,
        )
        .expect("the configuration parses");

        assert_eq!(
            executors["forum.thread.summarize"],
            ExecutorConfig::Webhook(WebhookConfig {
                url: "http://127.0.0.1:8080/hooks/summarize".into(),
                secret: "s3cret".into(),
                timeout_ms: 10_000,
            })
        );
        assert_eq!(
            executors["audit.record"],
            ExecutorConfig::Log(LogConfig {
                path: Some("audit.jsonl".into())
            })
        );
        assert_eq!(
            executors["audit.stdout"],
            ExecutorConfig::Log(LogConfig { path: None })
        );
        assert_eq!(
            executors["mail.send"],
            ExecutorConfig::Command(CommandConfig {
                program: "/usr/local/bin/send-mail".into(),
                args: vec!["--fast".into()],
                timeout_ms: 30_000,
            })
        );
    }

    #[test]
    fn parses_explicit_timeouts() {
        let executors = parse(
            r#"
            [executors.a]
            type = "webhook"
            url = "https://example.com/hook"
            secret = "k"
            timeout_ms = 5000
            [executors.b]
            type = "command"
            program = "/bin/true"
            timeout_ms = 100
            "#,
        )
        .expect("the configuration parses");
        assert!(matches!(&executors["a"], ExecutorConfig::Webhook(c) if c.timeout_ms == 5000));
        assert!(matches!(&executors["b"], ExecutorConfig::Command(c) if c.timeout_ms == 100));
    }

    #[test]
    fn refuses_an_unknown_key_and_names_it() {
        let error = parse(
            r#"
            [executors."mail.send"]
            type = "command"
            program = "/bin/true"
            timeout = 5
            "#,
        )
        .expect_err("an unknown key is an error");
        assert!(error.contains("timeout"), "{error}");
    }

    #[test]
    fn refuses_an_unknown_type_and_names_it() {
        let error = parse(
            r#"
            [executors.x]
            type = "carrier-pigeon"
            "#,
        )
        .expect_err("an unknown type is an error");
        assert!(error.contains("carrier-pigeon"), "{error}");
    }

    #[test]
    fn never_prints_the_webhook_secret() {
        let config = WebhookConfig {
            url: "http://127.0.0.1/".into(),
            secret: "hunter2".into(),
            timeout_ms: 1,
        };
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn builds_each_type_of_executor() {
        let log = temp_path("build-log");
        for config in [
            ExecutorConfig::Log(LogConfig { path: None }),
            ExecutorConfig::Log(LogConfig {
                path: Some(log.clone()),
            }),
            ExecutorConfig::Command(CommandConfig {
                program: "/bin/sh".into(),
                args: vec![],
                timeout_ms: 1000,
            }),
            ExecutorConfig::Webhook(WebhookConfig {
                url: "http://127.0.0.1:8080/hook".into(),
                secret: "k".into(),
                timeout_ms: 1000,
            }),
        ] {
            build(&config).unwrap_or_else(|e| panic!("{config:?} builds: {e}"));
        }
        let _ = std::fs::remove_file(log);
    }

    fn build_error(config: ExecutorConfig) -> String {
        match build(&config) {
            Ok(_) => panic!("{config:?} should be refused"),
            Err(error) => error,
        }
    }

    fn webhook(url: &str, secret: &str) -> ExecutorConfig {
        ExecutorConfig::Webhook(WebhookConfig {
            url: url.into(),
            secret: secret.into(),
            timeout_ms: 1000,
        })
    }

    #[test]
    fn refuses_a_webhook_url_that_does_not_parse() {
        let error = build_error(webhook("http://exa mple.com/", "k"));
        assert!(error.contains("http://exa mple.com/"), "{error}");
    }

    #[test]
    fn refuses_a_webhook_url_that_is_not_http() {
        let error = build_error(webhook("ftp://example.com/hook", "k"));
        assert!(
            error.contains("ftp://example.com/hook") && error.contains("http"),
            "{error}"
        );
    }

    #[test]
    fn refuses_a_webhook_without_a_secret() {
        let error = build_error(webhook("http://example.com/hook", ""));
        assert!(
            error.contains("secret") && error.contains("http://example.com/hook"),
            "{error}"
        );
    }

    #[test]
    fn refuses_a_command_without_a_program() {
        let error = build_error(ExecutorConfig::Command(CommandConfig {
            program: "".into(),
            args: vec![],
            timeout_ms: 1000,
        }));
        assert!(error.contains("program"), "{error}");
    }

    #[test]
    fn refuses_a_timeout_of_zero() {
        let error = build_error(ExecutorConfig::Webhook(WebhookConfig {
            url: "http://example.com/hook".into(),
            secret: "k".into(),
            timeout_ms: 0,
        }));
        assert!(error.contains("timeout_ms"), "{error}");
    }

    #[test]
    fn refuses_a_log_file_it_cannot_open_and_names_it() {
        let path = temp_path("no-such-dir").join("audit.jsonl");
        let error = build_error(ExecutorConfig::Log(LogConfig {
            path: Some(path.clone()),
        }));
        assert!(error.contains(&path.display().to_string()), "{error}");
    }
}
