//! Builds every guest from source before the tests compile, the way wasmtime's
//! test-programs do: the example handlers (`handlers/`) and the test guests
//! (`tests/guests/`), for wasm32-wasip2, in their own target directory
//! (`target/guests`, so this nested cargo never waits on the outer one's
//! lock). The example handlers are also copied to `handlers/<name>.wasm`, the
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
    for (workspace, list_name, copy_to_workspace) in [
        ("handlers", "HANDLERS", true),
        ("tests/guests", "GUESTS", false),
    ] {
        let workspace = root.join(workspace);
        let crates = member_crates(&workspace);
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join("Cargo.toml").display()
        );
        for name in &crates {
            println!("cargo:rerun-if-changed={}", workspace.join(name).display());
        }
        build(&workspace, &target_dir);
        writeln!(listing, "pub const {list_name}: &[(&str, &str)] = &[").expect("string write");
        for name in &crates {
            let built = target_dir
                .join("wasm32-wasip2/release")
                .join(format!("{}.wasm", name.replace('-', "_")));
            let path = if copy_to_workspace {
                let dropped = workspace.join(format!("{name}.wasm"));
                std::fs::copy(&built, &dropped).unwrap_or_else(|e| {
                    panic!("copy {} to {}: {e}", built.display(), dropped.display())
                });
                dropped
            } else {
                built
            };
            writeln!(listing, "    ({name:?}, {:?}),", path.display().to_string())
                .expect("string write");
        }
        writeln!(listing, "];").expect("string write");
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo")).join("guests.rs");
    std::fs::write(&out, listing).expect("write guests.rs");
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

fn build(workspace: &Path, target_dir: &Path) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--workspace",
        ])
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
