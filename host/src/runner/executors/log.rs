//! `type = "log"`: one JSON line per directive, to a file or stdout.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use serde_json::{Value, json};

use super::{LogConfig, describe};
use crate::runner::executor::{Executor, ExecutorError, directive_document};
use crate::store::Directive;

/// Appends each directive, with the time it was logged, as one JSON line.
#[derive(Debug)]
pub struct LogExecutor {
    sink: Sink,
}

#[derive(Debug)]
enum Sink {
    Stdout,
    /// Behind a mutex so lines from concurrent runner threads never
    /// interleave; the path is kept for error messages.
    File {
        path: PathBuf,
        file: Mutex<File>,
    },
}

impl LogExecutor {
    /// Opens the file now (append mode, created if missing), so a path that
    /// cannot be written is an error at start-up, not at the first directive.
    pub fn new(config: &LogConfig) -> Result<Self, String> {
        let sink = match &config.path {
            None => Sink::Stdout,
            Some(path) => {
                let file = OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(path)
                    .map_err(|e| format!("cannot open log file {}: {e}", path.display()))?;
                Sink::File {
                    path: path.clone(),
                    file: Mutex::new(file),
                }
            }
        };
        Ok(Self { sink })
    }

    /// Logs to stdout: the host's fallback executor.
    pub fn stdout() -> Self {
        Self { sink: Sink::Stdout }
    }
}

impl Executor for LogExecutor {
    fn kind(&self) -> &'static str {
        "log"
    }

    fn execute(&self, directive: &Directive) -> Result<Value, ExecutorError> {
        let mut document = directive_document(directive);
        document["logged_at"] = json!(crate::signal::format_timestamp(chrono::Utc::now()));
        // One write per line, so a line is never split between writers.
        let mut line = document.to_string();
        line.push('\n');

        let written = match &self.sink {
            Sink::Stdout => {
                let mut stdout = std::io::stdout().lock();
                stdout
                    .write_all(line.as_bytes())
                    .and_then(|()| stdout.flush())
            }
            Sink::File { file, .. } => {
                // A thread that panicked mid-write leaves nothing to repair:
                // the next line still goes on a line of its own.
                let mut file = file.lock().unwrap_or_else(PoisonError::into_inner);
                file.write_all(line.as_bytes()).and_then(|()| file.flush())
            }
        };
        written.map_err(|e| {
            let target = match &self.sink {
                Sink::Stdout => "stdout".to_string(),
                Sink::File { path, .. } => path.display().to_string(),
            };
            ExecutorError::Retryable(format!(
                "cannot log {} to {target}: {e}",
                describe(directive)
            ))
        })?;
        Ok(json!({"logged": true}))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{temp_path, test_directive};
    use super::*;

    #[test]
    fn appends_one_json_line_per_directive() {
        let path = temp_path("log");
        let executor = LogExecutor::new(&LogConfig {
            path: Some(path.clone()),
        })
        .expect("log file opens");

        let first = test_directive("audit.record");
        let second = test_directive("mail.send");
        assert_eq!(executor.execute(&first), Ok(json!({"logged": true})));
        assert_eq!(executor.execute(&second), Ok(json!({"logged": true})));

        let text = std::fs::read_to_string(&path).expect("log file is readable");
        let _ = std::fs::remove_file(&path);
        let lines: Vec<Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("each line is JSON"))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        for (line, directive) in lines.iter().zip([&first, &second]) {
            let mut expected = directive_document(directive);
            expected["logged_at"] = line["logged_at"].clone();
            assert_eq!(line, &expected);
            let logged_at = line["logged_at"].as_str().expect("logged_at is a string");
            chrono::DateTime::parse_from_rfc3339(logged_at).expect("logged_at is RFC 3339");
        }
    }

    #[test]
    fn keeps_what_the_file_already_held() {
        let path = temp_path("log-append");
        std::fs::write(&path, "{\"earlier\":true}\n").expect("seed the log file");
        let executor = LogExecutor::new(&LogConfig {
            path: Some(path.clone()),
        })
        .expect("log file opens");
        executor
            .execute(&test_directive("audit.record"))
            .expect("logging succeeds");

        let text = std::fs::read_to_string(&path).expect("log file is readable");
        let _ = std::fs::remove_file(&path);
        assert!(text.starts_with("{\"earlier\":true}\n"), "{text}");
        assert_eq!(text.lines().count(), 2, "{text}");
    }

    #[test]
    fn logs_to_stdout_when_no_path_is_given() {
        let executor = LogExecutor::new(&LogConfig { path: None }).expect("stdout needs no set-up");
        assert_eq!(
            executor.execute(&test_directive("audit.record")),
            Ok(json!({"logged": true}))
        );
    }
}
