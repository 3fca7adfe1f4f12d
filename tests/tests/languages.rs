//! Handlers in every language the project supports: the SDKs' own test suites
//! (`node --test`, pytest), and the forum summarizer written in Rust,
//! TypeScript and Python, each built from source by `build.rs` with its
//! SDK's build command, run by the real `sighost` binary.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use sighost::sandbox::{Manifest, Outcome};
use sighost::store::{DeliveryFilter, DeliveryState, DirectiveFilter};
use sighost::{HostConfig, Sighost};
use sighost_tests::host_helpers::{Scratch, install, wait_for};
use sighost_tests::server::{Server, cli, loaded};
use sighost_tests::{delivery, example_handler, guest, signal, test_python};

const LOAD_PATIENCE: Duration = Duration::from_secs(180);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository root")
}

fn succeeds(what: &str, command: &mut Command) -> String {
    let output = command
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{what} failed:\n{text}");
    text
}

#[test]
fn the_javascript_sdk_and_example_pass_their_own_tests() {
    let said = succeeds("npm test", Command::new("npm").args(["test", "--silent"]));
    // Both workspaces ran: node's runner sums up each (TAP, off a terminal).
    let counts = |what: &str| -> Vec<usize> {
        said.lines()
            .filter_map(|line| line.strip_prefix(&format!("# {what} ")))
            .map(|n| n.trim().parse().expect("a count"))
            .collect()
    };
    assert_eq!(counts("pass").len(), 2, "two workspaces:\n{said}");
    assert!(counts("pass").iter().all(|&n| n > 0), "{said}");
    assert!(counts("fail").iter().all(|&n| n == 0), "{said}");
}

#[test]
fn the_python_sdk_and_example_pass_their_own_tests() {
    let said = succeeds(
        "pytest",
        Command::new(test_python())
            .env("PYTHONPATH", root().join("sdk/python"))
            .args([
                "-m",
                "pytest",
                "-v",
                "--rootdir=.",
                "-p",
                "no:cacheprovider",
            ])
            .args(["sdk/python", "handlers/forum-summarizer-py"]),
    );
    // Both the SDK's tests and the example's ran.
    for path in ["sdk/python/", "handlers/forum-summarizer-py/"] {
        let passed = said
            .lines()
            .filter(|line| line.starts_with(path) && line.contains(" PASSED"))
            .count();
        assert!(passed > 0, "no test of {path} passed:\n{said}");
    }
}

/// The built example `name`, installed under its own name with its own
/// manifest, but for the package named `package`.
fn install_for_package(handlers: &Path, name: &str, package: &str) {
    let built = example_handler(name);
    let manifest = std::fs::read_to_string(built.with_extension("toml")).expect("its manifest");
    assert!(manifest.contains("package = \"forum\""), "{manifest}");
    let manifest = manifest.replace("package = \"forum\"", &format!("package = \"{package}\""));
    install(handlers, name, &built, &manifest);
}

#[test]
fn the_forum_summarizer_in_rust_typescript_and_python_asks_for_the_same_directive() {
    let scratch = Scratch::new("languages");
    let (data, handlers) = (scratch.subdir("data"), scratch.subdir("handlers"));
    // Each port serves its own package and tenant, so that each directive is
    // known to come from that port (they all ask for the same key). The
    // ports check for the `forum` package themselves: every tenant has it.
    let ports = [
        ("forum-summarizer", "forum_rs", "org_rs"),
        ("forum-summarizer-ts", "forum_ts", "org_ts"),
        // The same TypeScript built with the SDK's other engine, QuickJS.
        ("forum-summarizer-ts-quickjs", "forum_qjs", "org_qjs"),
        ("forum-summarizer-py", "forum_py", "org_py"),
    ];
    let host = Sighost::open(HostConfig::new(&data)).expect("open the store");
    for (name, package, tenant) in ports {
        install_for_package(&handlers, name, package);
        host.store()
            .create_tenant(tenant, json!({"auto_summaries": true}), Utc::now())
            .expect("create tenant");
        for package in ["forum", package] {
            host.store()
                .install_package(tenant, package)
                .expect("install package");
        }
    }
    // Has the package, has not turned summaries on: no directive.
    host.store()
        .create_tenant("org_off", json!({}), Utc::now())
        .expect("create tenant");
    for package in ["forum", "forum_rs", "forum_ts", "forum_qjs", "forum_py"] {
        host.store()
            .install_package("org_off", package)
            .expect("install package");
    }

    let server = Server::start_within(LOAD_PATIENCE, &data, &handlers, "run", 2, None);
    for (name, _, _) in ports {
        let digest = sighost::sandbox::digest(
            &std::fs::read(handlers.join(format!("{name}.wasm"))).expect("read"),
        );
        // A JavaScript or Python component is 12-18 MB to compile: its size,
        // not a promise, decides how long that takes on a busy machine.
        server.wait_for_log_within(LOAD_PATIENCE, &format!("{name} to load"), |l| {
            loaded(l, name, &digest)
        });
    }
    for tenant in ["org_rs", "org_ts", "org_qjs", "org_py", "org_off"] {
        let emitted = cli(
            &data,
            &[
                "emit",
                "forum.thread.created",
                r#"{"thread_id": "t1", "title": "Hello"}"#,
                "--tenant",
                tenant,
            ],
        );
        assert!(
            emitted.status.success(),
            "{}",
            String::from_utf8_lossy(&emitted.stderr)
        );
    }

    // Every port ran for its own tenant and for org_off, and completed.
    let done = wait_for("eight deliveries to complete", |last| {
        let all = host
            .store()
            .deliveries(&DeliveryFilter::default())
            .expect("deliveries");
        *last = format!(
            "{:?}",
            all.iter()
                .map(|d| (&d.handler, d.state))
                .collect::<Vec<_>>()
        );
        (all.len() == 2 * ports.len() && all.iter().all(|d| d.state == DeliveryState::Completed))
            .then_some(all)
    });
    let printed: Vec<(&str, String)> = ports
        .iter()
        .map(|&(name, _, tenant)| {
            let delivery = done
                .iter()
                .find(|d| d.handler == name && d.tenant == tenant)
                .unwrap_or_else(|| panic!("{name} ran for {tenant}: {done:?}"));
            let attempts = host.store().attempts(delivery.id).expect("attempts");
            (name, attempts[0].output.trim().to_owned())
        })
        .collect();
    for (name, output) in &printed {
        assert_eq!(
            output, "summarizing thread t1",
            "{name}: what the handler printed is kept with its attempt: {printed:?}"
        );
    }

    let directives = host
        .store()
        .directives(&DirectiveFilter::default())
        .expect("directives");
    let requested: Vec<(&str, &str, &str, &Value, &str)> = directives
        .iter()
        .map(|d| {
            let key = d.idempotency_key.as_str();
            (
                d.tenant.as_str(),
                d.handler.as_str(),
                d.name.as_str(),
                &d.payload,
                key,
            )
        })
        .collect();
    let expected = json!({"thread_id": "t1", "title": "Hello", "max_words": 120});
    for (name, _, tenant) in ports {
        let wanted = (
            tenant,
            name,
            "forum.thread.summarize",
            &expected,
            "summarize:t1",
        );
        assert!(requested.contains(&wanted), "{name}: {requested:?}");
    }
    assert_eq!(
        directives.len(),
        ports.len(),
        "none for org_off: {requested:?}"
    );
    server.stop();
}

/// The SDKs' probe handlers (their test fixtures), built with each SDK's
/// default build and run in the real sandbox: every way a delivery ends is
/// what the SDK documents, the default key is the one every SDK derives
/// (with the name from the probe's own package manifest), the clock is live
/// and what the handler prints is kept.
#[test]
fn each_sdk_ends_a_delivery_in_the_sandbox_as_it_documents() {
    let sandbox = sighost_tests::sandbox();
    let probes = [
        ("js-probe", "component-fixture"),
        ("py-probe", "component-fixture-py"),
    ];
    for (probe, package) in probes {
        let bytes = std::fs::read(guest(probe)).expect("built by build.rs");
        let manifest = Manifest::parse("directives = ['mail.send']").expect("manifest");
        let handler = sandbox
            .load_bytes(probe, &bytes, manifest, probe)
            .unwrap_or_else(|e| panic!("{probe}: {e}"));
        let run = |name: &str| {
            let signal = signal("org_acme", name, json!({"to": "a"}));
            let run = sandbox.invoke_blocking(&handler, &signal, &delivery(json!({}), &[]));
            (signal, run)
        };

        let (signal, asked) = run("ask");
        let output = &asked.report.output;
        assert_eq!(asked.outcome, Outcome::Ok, "{probe}: {output}");
        assert_eq!(asked.directives.len(), 1, "{probe}: {output}");
        let key =
            sighost_sdk::default_idempotency_key("org_acme", &signal.id, package, "mail.send");
        assert_eq!(asked.directives[0].idempotency_key, key, "{probe}");
        assert_eq!(asked.directives[0].payload, json!({"to": "a"}), "{probe}");
        assert!(
            output.contains("refused=not-permitted"),
            "{probe}: {output}"
        );
        let printed_ms: i64 = output
            .split("now=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|ms| ms.parse().ok())
            .unwrap_or_else(|| panic!("{probe} prints the time: {output}"));
        let host_ms = Utc::now().timestamp_millis();
        assert!(
            (host_ms - printed_ms).abs() < 60_000,
            "{probe}: the guest's clock is live ({printed_ms} against {host_ms})"
        );

        assert_eq!(
            run("transient").1.outcome,
            Outcome::Transient("try later".into()),
            "{probe}"
        );
        assert_eq!(
            run("permanent").1.outcome,
            Outcome::Permanent("never for org_acme".into()),
            "{probe}"
        );
        let refused = run("refused").1.outcome;
        assert!(
            matches!(&refused, Outcome::Permanent(m) if m.contains("not permitted")),
            "{probe}: a refused directive that escapes is permanent: {refused:?}"
        );
        let (_, bug) = run("something-else");
        assert!(
            matches!(bug.outcome, Outcome::Trap(_)),
            "{probe}: {:?}",
            bug.outcome
        );
        assert!(
            bug.report.output.contains("a bug: something-else"),
            "{probe}: an unexpected exception traps, with why on stderr: {}",
            bug.report.output
        );
        assert!(bug.directives.is_empty());
    }
}
