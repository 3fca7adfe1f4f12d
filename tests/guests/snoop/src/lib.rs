//! Looks at the host's environment, arguments, files, working directory and stdin
//! through std and reports what it saw in one `snoop.report` directive, so
//! tests can check that the sandbox shows it nothing.

use serde_json::{Map, Value, json};
use sighost_sdk::{Context, HandlerError, Signal, directive, handler};

fn describe<T>(result: std::io::Result<T>, summarize: impl FnOnce(T) -> String) -> Value {
    match result {
        Ok(value) => Value::String(summarize(value)),
        Err(error) => Value::String(format!("error: {error}")),
    }
}

#[handler]
fn handle_signal(signal: Signal, _tenant: String, _context: Context) -> Result<(), HandlerError> {
    let env: Vec<String> = std::env::vars_os()
        .map(|(name, _)| name.to_string_lossy().into_owned())
        .collect();
    let args: Vec<String> = std::env::args_os()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();

    let mut files = Map::new();
    for dir in ["/", "."] {
        let seen = describe(std::fs::read_dir(dir), |entries| {
            format!("{} entries", entries.count())
        });
        files.insert(dir.to_owned(), seen);
    }
    files.insert(
        "/etc/passwd".to_owned(),
        describe(std::fs::read_to_string("/etc/passwd"), |text| {
            format!("{} bytes", text.len())
        }),
    );
    let cwd = describe(std::env::current_dir(), |dir| dir.display().to_string());
    // Read to the end: end of file says "0 bytes", a refused read an error.
    let mut input = Vec::new();
    let stdin = describe(
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut input),
        |n| format!("{n} bytes"),
    );

    directive("snoop.report")
        .payload(&json!({ "env": env, "args": args, "files": files, "cwd": cwd, "stdin": stdin }))
        .request(&signal)?;
    Ok(())
}
