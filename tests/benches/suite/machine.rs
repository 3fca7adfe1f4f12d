//! What the report records about where and with what it was measured.

use std::path::Path;
use std::process::Command;

/// Lines of `- key: value` for the report's header.
pub fn describe() -> Vec<(String, String)> {
    let root = sighost_tests::workspace_root();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or("unknown".into(), |kib| {
            format!("{:.1} GiB", kib / 1024.0 / 1024.0)
        });
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap_or_default();
    let commit = command_output(&root, "git", &["rev-parse", "--short", "HEAD"]);
    let dirty = !command_output(&root, "git", &["status", "--porcelain"]).is_empty();
    vec![
        ("CPU".into(), format!("{cpu}, {cores} cores available")),
        ("memory".into(), memory),
        ("kernel".into(), command_output(&root, "uname", &["-sr"])),
        ("rustc".into(), command_output(&root, "rustc", &["-V"])),
        (
            "sighost".into(),
            format!(
                "{}{}",
                commit,
                if dirty {
                    " (with uncommitted changes)"
                } else {
                    ""
                }
            ),
        ),
        ("wasmtime".into(), locked_version(&lock, "wasmtime")),
        (
            "SQLite (bundled by rusqlite)".into(),
            rusqlite::version().to_owned(),
        ),
        ("PostgreSQL server".into(), postgres_version()),
        (
            "file system of the stores' files (the temp directory)".into(),
            command_output(
                &root,
                "df",
                &[
                    "--output=fstype",
                    &std::env::temp_dir().display().to_string(),
                ],
            )
            .lines()
            .last()
            .unwrap_or("unknown")
            .trim()
            .to_owned(),
        ),
    ]
}

fn command_output(dir: &Path, program: &str, args: &[&str]) -> String {
    Command::new(program)
        .current_dir(dir)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

/// The version of `package` in a Cargo.lock.
fn locked_version(lock: &str, package: &str) -> String {
    let marker = format!("name = \"{package}\"\nversion = \"");
    lock.find(&marker)
        .and_then(|at| {
            let rest = &lock[at + marker.len()..];
            rest.split('"').next().map(str::to_owned)
        })
        .unwrap_or_else(|| "unknown".into())
}

fn postgres_version() -> String {
    match ::postgres::Client::connect(&sighost_tests::postgres::base_url(), ::postgres::NoTls) {
        Ok(mut client) => client
            .query_one(
                "SELECT current_setting('server_version') || '; fsync ' || current_setting('fsync') \
                 || ', synchronous_commit ' || current_setting('synchronous_commit') \
                 || ', shared_buffers ' || current_setting('shared_buffers')",
                &[],
            )
            .map(|row| row.get::<_, String>(0))
            .unwrap_or_else(|e| format!("unknown ({e})")),
        Err(e) => format!("unreachable ({e})"),
    }
}
