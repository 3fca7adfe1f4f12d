//! The configuration file, through the real `sighost` binary: defaults with no
//! file, `./sighost.toml` and `--config`/`SIGHOST_CONFIG`, flags over the
//! file, and errors that name the bad key and the file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sighost_tests::sighost_binary;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sighost-config-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// `sighost <args>` in `cwd`, with none of the caller's SIGHOST_* settings.
fn sighost(cwd: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(sighost_binary());
    command.current_dir(cwd).args(args);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SIGHOST_") {
            command.env_remove(name);
        }
    }
    command.output().expect("run sighost")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `sighost --config <file> status` on a file holding `text`, expects it
/// to fail, and returns the error and the file's path.
fn refused(name: &str, text: &str) -> (String, String) {
    let dir = temp_dir(name);
    let file = dir.join("bad.toml");
    std::fs::write(&file, text).expect("write config");
    let output = sighost(&dir, &["--config", file.to_str().expect("utf-8"), "status"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        !dir.join("data").exists(),
        "nothing is opened with a bad file"
    );
    let error = stderr(&output);
    let _ = std::fs::remove_dir_all(&dir);
    (error, file.display().to_string())
}

#[test]
fn an_unknown_key_is_an_error_naming_the_key_and_the_file() {
    let (error, file) = refused("unknown", "[limits]\nmemory_mb = 64\n");
    assert!(error.contains(&file), "{error}");
    assert!(error.contains("limits.memory_mb"), "{error}");
    assert!(error.contains("line 2"), "{error}");
}

#[test]
fn an_unknown_top_level_key_is_an_error_too() {
    let (error, file) = refused("top-level", "colour = \"blue\"\n");
    assert!(error.contains(&file) && error.contains("colour"), "{error}");
}

#[test]
fn a_wrong_type_is_an_error_naming_the_key_and_the_file() {
    let (error, file) = refused("wrong-type", "[workers]\nthreads = \"four\"\n");
    assert!(error.contains(&file), "{error}");
    assert!(error.contains("workers.threads"), "{error}");
}

#[test]
fn a_bad_value_is_an_error_naming_the_key_and_the_file() {
    let (error, file) = refused("bad-value", "[http]\nlisten = \"localhost\"\n");
    assert!(
        error.contains(&file) && error.contains("http.listen"),
        "{error}"
    );
    let (error, _) = refused("bad-executor", "[executors.\"Mail\"]\ntype = \"log\"\n");
    assert!(error.contains("executors.\"Mail\""), "{error}");
}

#[test]
fn a_short_token_is_refused_without_being_printed() {
    let (error, file) = refused(
        "short-token",
        "[tokens.tenants]\norg_acme = \"tiny-secret\"\n",
    );
    assert!(error.contains(&file), "{error}");
    assert!(error.contains("tokens.tenants.org_acme"), "{error}");
    assert!(!error.contains("tiny-secret"), "{error}");
}

#[test]
fn a_missing_config_file_is_an_error_naming_it() {
    let dir = temp_dir("missing");
    let output = sighost(&dir, &["--config", "nowhere.toml", "status"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("nowhere.toml"),
        "{}",
        stderr(&output)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn runs_on_the_defaults_with_no_file() {
    let dir = temp_dir("defaults");
    let output = sighost(&dir, &["tenants", "create", "org_acme"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        dir.join("data").join("sighost.db").is_file(),
        "./data is the default"
    );
    let output = sighost(&dir, &["status", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn reads_sighost_toml_in_the_current_directory() {
    let dir = temp_dir("cwd-file");
    std::fs::write(dir.join("sighost.toml"), "data_dir = \"state\"\n").expect("write");
    let output = sighost(&dir, &["tenants", "create", "org_acme"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(dir.join("state").join("sighost.db").is_file());
    assert!(!dir.join("data").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn takes_the_file_from_sighost_config_and_lets_flags_override_it() {
    let dir = temp_dir("env-and-flags");
    let file = dir.join("elsewhere.toml");
    std::fs::write(&file, "data_dir = \"from-file\"\n").expect("write");

    let mut command = Command::new(sighost_binary());
    command
        .current_dir(&dir)
        .env_remove("SIGHOST_DATA_DIR")
        .env("SIGHOST_CONFIG", &file)
        .args(["tenants", "create", "org_acme"]);
    let output = command.output().expect("run sighost");
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(dir.join("from-file").join("sighost.db").is_file());

    let output = sighost(
        &dir,
        &[
            "--config",
            file.to_str().expect("utf-8"),
            "--data-dir",
            "from-flag",
            "tenants",
            "create",
            "org_acme",
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(dir.join("from-flag").join("sighost.db").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn run_refuses_an_executor_it_cannot_build_and_names_it() {
    let dir = temp_dir("bad-executor-run");
    std::fs::write(
        dir.join("sighost.toml"),
        "[http]\nenabled = false\n[executors.\"mail.send\"]\ntype = \"command\"\nprogram = \"\"\n",
    )
    .expect("write");
    let output = sighost(&dir, &["run"]);
    assert_eq!(output.status.code(), Some(1));
    let error = stderr(&output);
    assert!(error.contains("executors.\"mail.send\""), "{error}");
    assert!(error.contains("sighost.toml"), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
}
