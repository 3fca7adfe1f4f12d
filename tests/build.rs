//! Builds every guest from source before the tests compile, the way wasmtime's
//! test-programs do: the example handlers (`handlers/`) and the test guests
//! (`tests/guests/`), for wasm32-wasip2, in their own target directory
//! (`target/guests`, so this nested cargo never waits on the outer one's
//! build lock). The example handlers are also copied to `handlers/<name>.wasm`, the
//! host's default drop-in directory. `guests.rs` in OUT_DIR lists every
//! component with its path.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .parent()
        .expect("tests/ sits in the workspace root")
        .to_path_buf();
    let target_dir = root.join("target").join("guests");

    for watched in [
        "wit",
        "guest-sdk/src",
        "guest-sdk/macros/src",
        "guest-sdk/Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    let mut listing = String::new();

    // The example handlers are members of the root workspace; the test guests
    // are a workspace of their own.
    let handlers_dir = root.join("handlers");
    let handlers = member_crates(&handlers_dir);
    let mut args = vec!["build", "--profile", "wasm", "--target", "wasm32-wasip2"];
    for name in &handlers {
        args.extend(["-p", name.as_str()]);
        println!(
            "cargo:rerun-if-changed={}",
            handlers_dir.join(name).display()
        );
    }
    cargo(&root, &target_dir, &args);
    writeln!(listing, "pub const HANDLERS: &[(&str, &str)] = &[").expect("string write");
    for name in &handlers {
        let built = wasm_output(&target_dir, "wasm", name);
        let dropped = handlers_dir.join(format!("{name}.wasm"));
        std::fs::copy(&built, &dropped)
            .unwrap_or_else(|e| panic!("copy {} to {}: {e}", built.display(), dropped.display()));
        writeln!(
            listing,
            "    ({name:?}, {:?}),",
            dropped.display().to_string()
        )
        .expect("string write");
    }
    for (name, built) in language_examples(&root, &target_dir) {
        writeln!(
            listing,
            "    ({name:?}, {:?}),",
            built.display().to_string()
        )
        .expect("string write");
    }
    writeln!(listing, "];").expect("string write");

    let guests_dir = root.join("tests").join("guests");
    let guests = member_crates(&guests_dir);
    println!(
        "cargo:rerun-if-changed={}",
        guests_dir.join("Cargo.toml").display()
    );
    for name in &guests {
        println!("cargo:rerun-if-changed={}", guests_dir.join(name).display());
    }
    cargo(
        &guests_dir,
        &target_dir,
        &[
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--workspace",
        ],
    );
    writeln!(listing, "pub const GUESTS: &[(&str, &str)] = &[").expect("string write");
    for (name, built) in sdk_probes(&root, &target_dir) {
        writeln!(
            listing,
            "    ({name:?}, {:?}),",
            built.display().to_string()
        )
        .expect("string write");
    }
    for name in &guests {
        let built = wasm_output(&target_dir, "release", name);
        writeln!(
            listing,
            "    ({name:?}, {:?}),",
            built.display().to_string()
        )
        .expect("string write");
    }
    // Components written as text (`tests/components/*.wat`): what no
    // language toolchain emits, such as a core start function.
    let components_dir = root.join("tests").join("components");
    println!("cargo:rerun-if-changed={}", components_dir.display());
    let built_dir = target_dir.join("components");
    std::fs::create_dir_all(&built_dir)
        .unwrap_or_else(|e| panic!("create {}: {e}", built_dir.display()));
    for text in wat_files(&components_dir) {
        let name = text
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("a file name")
            .to_owned();
        let bytes = wat::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", text.display()));
        let built = built_dir.join(format!("{}.wasm", name.replace('-', "_")));
        std::fs::write(&built, bytes).unwrap_or_else(|e| panic!("write {}: {e}", built.display()));
        writeln!(
            listing,
            "    ({name:?}, {:?}),",
            built.display().to_string()
        )
        .expect("string write");
    }
    writeln!(listing, "];").expect("string write");

    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo")).join("guests.rs");
    std::fs::write(&out, listing).expect("write guests.rs");
}

/// Builds the TypeScript and Python examples with their SDKs' own build
/// commands, as an author would, into `handlers/<name>.wasm`; and the
/// TypeScript one again with the SDK's other JavaScript engine (QuickJS),
/// into `built_dir` with its manifest, for the tests and benchmarks to
/// compare. The tools come pinned from the npm workspace and the tests'
/// virtualenv, both made by `scripts/prepare.sh`.
fn language_examples(root: &Path, built_dir: &Path) -> Vec<(&'static str, PathBuf)> {
    for watched in [
        "package-lock.json",
        "sdk/js/src",
        "sdk/js/bin",
        "sdk/js/scripts",
        "sdk/js/wit-extras",
        "sdk/js/package.json",
        "tests/requirements.txt",
        "sdk/python/sighost_handler",
        "handlers/forum-summarizer-ts/src",
        "handlers/forum-summarizer-ts/package.json",
        "handlers/forum-summarizer-ts.toml",
        "handlers/forum-summarizer-py/forum_summarizer.py",
        "handlers/forum-summarizer-py/pyproject.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let handlers = root.join("handlers");
    let typescript = handlers.join("forum-summarizer-ts.wasm");
    let entry = "handlers/forum-summarizer-ts/src/handler.ts";
    build_javascript(root, entry, &typescript, "starlingmonkey");
    let quickjs = built_dir.join("forum-summarizer-ts-quickjs.wasm");
    build_javascript(root, entry, &quickjs, "quickjs");
    std::fs::copy(
        handlers.join("forum-summarizer-ts.toml"),
        quickjs.with_extension("toml"),
    )
    .expect("copy the TypeScript example's manifest");
    let python = handlers.join("forum-summarizer-py.wasm");
    build_python(root, "handlers/forum-summarizer-py", &python);
    vec![
        ("forum-summarizer-ts", typescript),
        ("forum-summarizer-ts-quickjs", quickjs),
        ("forum-summarizer-py", python),
    ]
}

/// The JavaScript and Python SDKs' probe handlers (their test fixtures:
/// every way a delivery can end), built with each SDK's default build into
/// `built_dir`, for the host's tests to run in the real sandbox.
fn sdk_probes(root: &Path, built_dir: &Path) -> Vec<(&'static str, PathBuf)> {
    for watched in ["sdk/js/test/fixture", "sdk/python/tests/fixture"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let js = built_dir.join("js-probe.wasm");
    build_javascript(
        root,
        "sdk/js/test/fixture/handler.js",
        &js,
        "starlingmonkey",
    );
    let python = built_dir.join("py-probe.wasm");
    build_python(root, "sdk/python/tests/fixture", &python);
    vec![("js-probe", js), ("py-probe", python)]
}

const PREPARED: &str =
    "run scripts/prepare.sh first: it installs the pinned node and Python packages";

/// `sighost-handler-build` of the JavaScript SDK, as an author runs it.
fn build_javascript(root: &Path, entry: &str, out: &Path, backend: &str) {
    create_parent(out);
    run(
        Command::new("node")
            .current_dir(root)
            .args(["sdk/js/bin/build.js", entry, "--backend", backend, "-o"])
            .arg(out),
        &format!("building {entry} with {backend} failed; {PREPARED}"),
    );
}

/// `python -m sighost_handler.build` of the Python SDK, as an author runs it.
fn build_python(root: &Path, app: &str, out: &Path) {
    create_parent(out);
    run(
        Command::new(test_python(root))
            .current_dir(root)
            .env("PYTHONPATH", root.join("sdk/python"))
            .args(["-m", "sighost_handler.build", app, "-o"])
            .arg(out),
        &format!("building {app} failed; {PREPARED}"),
    );
}

fn create_parent(file: &Path) {
    let dir = file.parent().expect("a file in a directory");
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
}

/// The tests' virtualenv Python (scripts/prepare-languages.sh makes it).
fn test_python(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| {
            if dir.is_absolute() {
                dir
            } else {
                root.join(dir)
            }
        })
        .unwrap_or_else(|| root.join("target"))
        .join("test-venv/bin/python")
}

fn run(command: &mut Command, failed: &str) {
    let status = command.status().unwrap_or_else(|e| panic!("{failed}: {e}"));
    assert!(status.success(), "{failed}");
}

/// The crates of a cargo workspace: its subdirectories holding a Cargo.toml.
fn member_crates(workspace: &Path) -> Vec<String> {
    let mut crates: Vec<String> = std::fs::read_dir(workspace)
        .unwrap_or_else(|e| panic!("read {}: {e}", workspace.display()))
        .filter_map(Result::ok)
        .filter(|entry| entry.path().join("Cargo.toml").is_file())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    crates.sort();
    crates
}

/// The `*.wat` files of `dir`, in name order.
fn wat_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "wat"))
        .collect();
    files.sort();
    files
}

fn wasm_output(target_dir: &Path, profile: &str, name: &str) -> PathBuf {
    target_dir
        .join("wasm32-wasip2")
        .join(profile)
        .join(format!("{}.wasm", name.replace('-', "_")))
}

/// Runs a nested `cargo` in `workspace` with `args`, building into `target_dir`.
fn cargo(workspace: &Path, target_dir: &Path, args: &[&str]) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace)
        .args(args)
        .env("CARGO_TARGET_DIR", target_dir)
        // The outer build's flags are for the host target, not for wasm.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_MAKEFLAGS")
        .status()
        .unwrap_or_else(|e| panic!("run cargo in {}: {e}", workspace.display()));
    assert!(
        status.success(),
        "building the guests in {} failed; is the wasm32-wasip2 target installed? \
         (rustup target add wasm32-wasip2)",
        workspace.display()
    );
}
