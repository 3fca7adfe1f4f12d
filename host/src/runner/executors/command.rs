//! `type = "command"`: runs a program with the directive on stdin.

use std::io::{ErrorKind, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wait_timeout::ChildExt;

use super::{CommandConfig, describe};
use crate::runner::executor::{Executor, ExecutorError, directive_document};
use crate::store::Directive;

/// How much of each of stdout and stderr is kept; the rest is read and
/// dropped so the child never blocks on a full pipe.
const CAPTURE_LIMIT: usize = 64 * 1024;

/// How much of stderr an error message quotes.
const STDERR_TAIL: usize = 1024;

/// Runs `program args…` once per directive, with [`directive_document`] on
/// stdin and `SIGHOST_IDEMPOTENCY_KEY`, `SIGHOST_DIRECTIVE_ID`,
/// `SIGHOST_DIRECTIVE_NAME` and `SIGHOST_TENANT` added to the environment it
/// inherits. Exit 0 is success, and stdout is the result (as JSON when it
/// parses).
///
/// On timeout only the child itself is killed: processes it started and
/// left running are not, and are not waited for.
#[derive(Debug)]
pub struct CommandExecutor {
    program: PathBuf,
    args: Vec<String>,
    timeout: Duration,
}

impl CommandExecutor {
    pub fn new(config: &CommandConfig) -> Result<Self, String> {
        if config.program.as_os_str().is_empty() {
            return Err("command executor: program is empty".into());
        }
        // A day at most: beyond it the lease would have long expired anyway,
        // and deadlines far enough away do not fit in an `Instant`.
        const MAX_TIMEOUT_MS: u64 = 24 * 60 * 60 * 1000;
        if config.timeout_ms == 0 || config.timeout_ms > MAX_TIMEOUT_MS {
            return Err(format!(
                "command executor for {}: timeout_ms must be 1 to {MAX_TIMEOUT_MS}",
                config.program.display()
            ));
        }
        Ok(Self {
            program: config.program.clone(),
            args: config.args.clone(),
            timeout: Duration::from_millis(config.timeout_ms),
        })
    }

    fn run(&self, directive: &Directive) -> Result<Value, String> {
        let program = self.program.display();
        let deadline = Instant::now() + self.timeout;
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .env("SIGHOST_IDEMPOTENCY_KEY", &directive.idempotency_key)
            .env("SIGHOST_DIRECTIVE_ID", &directive.id)
            .env("SIGHOST_DIRECTIVE_NAME", &directive.name)
            .env("SIGHOST_TENANT", &directive.tenant)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {program}: {e}"))?;

        // Every pipe is served by its own thread, so a child that does not
        // read its stdin, or writes a lot before reading it, cannot stall us.
        // The stdin writer is never joined: it ends when the child exits.
        if let Some(mut stdin) = child.stdin.take() {
            let document = directive_document(directive).to_string();
            std::thread::spawn(move || {
                // A child that exits without reading its input is its own
                // business; its exit status says how it went.
                let _ = stdin.write_all(document.as_bytes());
            });
        }
        let stdout = child.stdout.take().map(|pipe| capture(pipe, Keep::Head));
        let stderr = child.stderr.take().map(|pipe| capture(pipe, Keep::Tail));

        let status = match child.wait_timeout(self.timeout) {
            Ok(Some(status)) => status,
            waited => {
                // Kill, then reap, so no zombie is left behind. Both fail
                // only when the child has just exited on its own.
                let _ = child.kill();
                let _ = child.wait();
                return Err(match waited {
                    Err(e) => format!("waiting for {program}: {e}"),
                    Ok(_) => format!("{program} timed out after {} ms", self.timeout.as_millis()),
                });
            }
        };

        // A process the child left behind may still hold its pipes open:
        // wait for the output no longer than the timeout allows.
        let output = |pipe: Option<Receiver<Vec<u8>>>| {
            let left = deadline.saturating_duration_since(Instant::now());
            pipe.map_or(Ok(Vec::new()), |pipe| pipe.recv_timeout(left))
        };
        let (Ok(stdout), Ok(stderr)) = (output(stdout), output(stderr)) else {
            return Err(format!(
                "{program} exited ({status}) but its output stayed open past the timeout of {} ms \
                 (does a process it started still hold it?)",
                self.timeout.as_millis()
            ));
        };

        if !status.success() {
            return Err(format!(
                "{program} failed ({status}); stderr: {}",
                tail(&stderr)
            ));
        }
        Ok(serde_json::from_slice(&stdout)
            .unwrap_or_else(|_| json!({"stdout": String::from_utf8_lossy(&stdout)})))
    }
}

impl Executor for CommandExecutor {
    fn kind(&self) -> &'static str {
        "command"
    }

    fn execute(&self, directive: &Directive) -> Result<Value, ExecutorError> {
        // Every failure is worth another attempt: a program that is missing
        // or failing today may be installed or fixed before the next one.
        self.run(directive)
            .map_err(|e| ExecutorError::Retryable(format!("{}: {e}", describe(directive))))
    }
}

/// Which end of a long output to keep.
#[derive(Debug, Clone, Copy)]
enum Keep {
    /// The result is at the start of stdout.
    Head,
    /// The reason for a failure is at the end of stderr.
    Tail,
}

/// Reads a pipe to its end on a thread of its own, keeping at most
/// [`CAPTURE_LIMIT`] bytes, and sends what it kept.
fn capture(mut pipe: impl Read + Send + 'static, keep: Keep) -> Receiver<Vec<u8>> {
    let (sender, receiver) = mpsc::sync_channel(1);
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => kept.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
            if kept.len() > CAPTURE_LIMIT {
                match keep {
                    Keep::Head => kept.truncate(CAPTURE_LIMIT),
                    Keep::Tail => drop(kept.drain(..kept.len() - CAPTURE_LIMIT)),
                }
            }
        }
        // The executor stops listening when it gave up waiting.
        let _ = sender.send(kept);
    });
    receiver
}

/// The last [`STDERR_TAIL`] bytes of stderr, as text, for an error message.
fn tail(stderr: &[u8]) -> String {
    let start = stderr.len().saturating_sub(STDERR_TAIL);
    let text = String::from_utf8_lossy(&stderr[start..]);
    let text = text.trim();
    if text.is_empty() {
        "(empty)".into()
    } else {
        text.into()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{temp_path, test_directive};
    use super::*;

    fn sh(script: &str, extra_args: &[&str], timeout_ms: u64) -> CommandExecutor {
        let mut args = vec!["-c".to_string(), script.to_string()];
        args.extend(extra_args.iter().map(|a| a.to_string()));
        CommandExecutor::new(&CommandConfig {
            program: "/bin/sh".into(),
            args,
            timeout_ms,
        })
        .expect("the command executor builds")
    }

    fn retryable(result: Result<Value, ExecutorError>) -> String {
        match result {
            Err(ExecutorError::Retryable(message)) => message,
            other => panic!("expected a retryable error, got {other:?}"),
        }
    }

    #[test]
    fn returns_stdout_parsed_as_json_on_success() {
        let executor = sh(r#"echo '{"sent": true, "id": 7}'"#, &[], 5000);
        assert_eq!(
            executor.execute(&test_directive("mail.send")),
            Ok(json!({"sent": true, "id": 7}))
        );
    }

    #[test]
    fn returns_stdout_as_text_when_it_is_not_json() {
        let executor = sh("echo 'mail queued'", &[], 5000);
        assert_eq!(
            executor.execute(&test_directive("mail.send")),
            Ok(json!({"stdout": "mail queued\n"}))
        );
    }

    #[test]
    fn hands_the_child_the_directive_on_stdin_and_in_its_environment() {
        let out = temp_path("command-out");
        let script = r#"cat > "$0"; echo >> "$0"; printf '%s\n' "$SIGHOST_IDEMPOTENCY_KEY" "$SIGHOST_DIRECTIVE_ID" \
            "$SIGHOST_DIRECTIVE_NAME" "$SIGHOST_TENANT" "${PATH:+inherited}" >> "$0""#;
        let out_arg = out.to_str().expect("temp path is UTF-8");
        let directive = test_directive("mail.send");
        sh(script, &[out_arg], 5000)
            .execute(&directive)
            .expect("the command succeeds");

        let text = std::fs::read_to_string(&out).expect("the child wrote its file");
        let _ = std::fs::remove_file(&out);
        let (stdin, env) = text.split_once('\n').expect("stdin, then the environment");
        let stdin: Value = serde_json::from_str(stdin).expect("stdin is JSON");
        assert_eq!(stdin, directive_document(&directive));
        assert_eq!(
            env.lines().collect::<Vec<_>>(),
            [
                "key-mail.send",
                "dir_mail.send",
                "mail.send",
                "org_acme",
                "inherited"
            ]
        );
    }

    #[test]
    fn retries_when_the_program_exits_non_zero_and_quotes_stderr() {
        let executor = sh("echo 'smtp: connection refused' >&2; exit 3", &[], 5000);
        let message = retryable(executor.execute(&test_directive("mail.send")));
        assert!(message.contains("smtp: connection refused"), "{message}");
        assert!(message.contains("exit status: 3"), "{message}");
        assert!(
            message.contains("/bin/sh") && message.contains("dir_mail.send"),
            "{message}"
        );
    }

    #[test]
    fn retries_when_the_program_times_out_and_kills_it() {
        let pid_file = temp_path("command-pid");
        let pid_arg = pid_file.to_str().expect("temp path is UTF-8");
        let executor = sh(r#"echo $$ > "$0"; exec sleep 10"#, &[pid_arg], 300);

        let started = Instant::now();
        let message = retryable(executor.execute(&test_directive("mail.send")));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
        assert!(message.contains("timed out after 300 ms"), "{message}");

        let pid = std::fs::read_to_string(&pid_file).expect("the child wrote its pid");
        let _ = std::fs::remove_file(&pid_file);
        // Killed and reaped: not even a zombie is left.
        let proc_entry = PathBuf::from(format!("/proc/{}", pid.trim()));
        assert!(
            !proc_entry.exists(),
            "{} is still there",
            proc_entry.display()
        );
    }

    #[test]
    fn retries_when_a_process_it_started_keeps_its_output_open() {
        // The background sleep inherits stdout and outlives the shell.
        let executor = sh("sleep 3 & echo started", &[], 300);
        let started = Instant::now();
        let message = retryable(executor.execute(&test_directive("mail.send")));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
        assert!(message.contains("output stayed open"), "{message}");
    }

    #[test]
    fn retries_when_the_program_is_missing_and_names_it() {
        let executor = CommandExecutor::new(&CommandConfig {
            program: "/nonexistent/send-mail".into(),
            args: vec![],
            timeout_ms: 5000,
        })
        .expect("the command executor builds");
        let message = retryable(executor.execute(&test_directive("mail.send")));
        assert!(message.contains("/nonexistent/send-mail"), "{message}");
        assert!(message.contains("No such file"), "{message}");
    }

    #[test]
    fn does_not_deadlock_on_a_chatty_program_that_ignores_stdin() {
        // About 1 MiB on each pipe, far past what a pipe buffers.
        let executor = sh(
            "yes stdout | head -c 1000000; yes stderr | head -c 1000000 >&2",
            &[],
            10_000,
        );
        match executor
            .execute(&test_directive("mail.send"))
            .expect("the command succeeds")
        {
            Value::Object(result) => {
                let stdout = result["stdout"].as_str().expect("stdout is text");
                assert_eq!(stdout.len(), CAPTURE_LIMIT);
            }
            other => panic!("unexpected result {other}"),
        }
    }

    #[test]
    fn quotes_only_the_end_of_a_long_stderr() {
        let executor = sh(
            "yes noise | head -c 200000 >&2; echo 'the real reason' >&2; exit 1",
            &[],
            10_000,
        );
        let message = retryable(executor.execute(&test_directive("mail.send")));
        assert!(message.ends_with("the real reason"), "{message}");
        assert!(message.len() < 2 * STDERR_TAIL, "{} bytes", message.len());
    }
}
