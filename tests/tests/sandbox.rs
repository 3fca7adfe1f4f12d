//! The sandbox against real components built from source: every example
//! handler and every hostile guest, each with the outcome it must get. All tests
//! share one sandbox, as a host process does, so they also show that nothing a
//! guest does takes the host down or leaks into the next invocation.

use std::sync::LazyLock;
use std::time::Duration;

use serde_json::json;
use sighost::sandbox::{Handler, LoadError, Manifest, Outcome, Sandbox, SandboxConfig, Shape};
use sighost_tests::{GUESTS, HANDLERS, delivery, example_handler, guest, signal};

static SANDBOX: LazyLock<Sandbox> = LazyLock::new(sighost_tests::sandbox);

fn manifest(toml: &str) -> Manifest {
    Manifest::parse(toml).expect("test manifest")
}

fn load_guest(name: &str, toml: &str) -> Handler {
    load_in(&SANDBOX, name, toml)
}

fn load_in(sandbox: &Sandbox, name: &str, toml: &str) -> Handler {
    let bytes = std::fs::read(guest(name)).expect("guest built by build.rs");
    sandbox
        .load_bytes(name, &bytes, manifest(toml), name)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn run(handler: &Handler, tenant: &str) -> sighost::Invocation {
    SANDBOX.invoke_blocking(
        handler,
        &signal(tenant, "test.happened", json!({"n": 1})),
        &delivery(json!({}), &[]),
    )
}

/// Every guest under tests/guests and every example handler, with the test
/// that covers it. A guest added without a line here fails this test.
#[test]
fn every_guest_has_a_test() {
    let covered = [
        "trivial",
        "looper",
        "memory-bomb",
        "deep-recursion",
        "panicker",
        "fs-importer",
        "socket-importer",
        "unknown-importer",
        "snoop",
        "directive-flood",
        "oversized-directive",
        "secret-directive",
        "forbidden-directive",
        "cross-tenant",
        "transient-failure",
        "permanent-failure",
        "chatty",
        "context-shape",
        "signal-shape",
        "tenant-shape",
        "slow",
        "sleeper",
        "sleepy-constructor",
        // components written as text
        "busy-start",
        "sleepy-start",
        "exiter",
        "random-hog",
        "resource-hoarder",
        "stream-spinner",
        "residue",
        // examples
        "forum-summarizer",
        "audit-trail",
        "signal-echo",
        // the SDKs' probes and the examples in other languages:
        // tests/languages.rs runs them
        "js-probe",
        "py-probe",
        "forum-summarizer-ts",
        "forum-summarizer-ts-quickjs",
        "forum-summarizer-py",
    ];
    for (name, _) in GUESTS.iter().chain(HANDLERS) {
        assert!(
            covered.contains(name),
            "{name} has no test in tests/sandbox.rs"
        );
    }
    assert_eq!(
        covered.len(),
        GUESTS.len() + HANDLERS.len(),
        "a covered guest no longer exists"
    );
}

#[test]
fn forum_summarizer_requests_a_summary_for_a_tenant_that_turned_it_on() {
    let handler = SANDBOX
        .load_file(&example_handler("forum-summarizer"))
        .expect("loads with its manifest");
    assert_eq!(handler.shape, Shape::SignalTenantContext);
    assert_eq!(handler.manifest.package.as_deref(), Some("forum"));
    let thread = signal(
        "org_acme",
        "forum.thread.created",
        json!({"thread_id": "t42", "title": "Hello"}),
    );
    let on = SANDBOX.invoke_blocking(
        &handler,
        &thread,
        &delivery(json!({"auto_summaries": true}), &["forum"]),
    );
    assert_eq!(on.outcome, Outcome::Ok, "{}", on.report.output);
    assert_eq!(on.directives.len(), 1);
    let d = &on.directives[0];
    assert_eq!(
        (d.tenant.as_str(), d.name.as_str()),
        ("org_acme", "forum.thread.summarize")
    );
    assert_eq!(d.idempotency_key, "summarize:t42");
    assert_eq!(
        d.payload,
        json!({"thread_id": "t42", "title": "Hello", "max_words": 120})
    );
}

#[test]
fn forum_summarizer_does_nothing_when_not_applicable() {
    let handler = SANDBOX
        .load_file(&example_handler("forum-summarizer"))
        .expect("loads");
    let thread = signal(
        "org_acme",
        "forum.thread.created",
        json!({"thread_id": "t42", "title": "Hello"}),
    );
    for (settings, packages) in [
        (json!({"auto_summaries": true}), &[][..]),
        (json!({}), &["forum"][..]),
    ] {
        let run = SANDBOX.invoke_blocking(&handler, &thread, &delivery(settings, packages));
        assert_eq!(run.outcome, Outcome::Ok);
        assert!(run.directives.is_empty());
    }
}

#[test]
fn the_other_example_shapes_run_with_their_manifests() {
    let audit = SANDBOX
        .load_file(&example_handler("audit-trail"))
        .expect("loads");
    assert_eq!(audit.shape, Shape::SignalContext);
    let run = run(&audit, "org_acme");
    assert_eq!(run.outcome, Outcome::Ok);
    assert_eq!(run.directives[0].name, "audit.record");
    assert_eq!(run.directives[0].payload["signal_id"], "sig_org_acme_1");

    let echo = SANDBOX
        .load_file(&example_handler("signal-echo"))
        .expect("loads");
    assert_eq!(echo.shape, Shape::Signal);
    let ping = signal("org_acme", "echo.ping", json!({"n": 7}));
    let run = SANDBOX.invoke_blocking(&echo, &ping, &delivery(json!({}), &[]));
    assert_eq!(run.outcome, Outcome::Ok);
    assert_eq!(
        run.directives[0].payload,
        json!({"echo": {"n": 7}, "of": "echo.ping"})
    );
}

#[test]
fn each_shape_receives_the_right_arguments() {
    let tenant = load_guest(
        "tenant-shape",
        "directives = ['shape.tenant']\n[options]\nlevel = 3",
    );
    assert_eq!(tenant.shape, Shape::SignalTenantContext);
    let sig = signal(
        "org_acme",
        "forum.thread.created",
        json!({"thread_id": "t1"}),
    );
    let mut ctx = delivery(json!({"auto_summaries": true}), &["forum", "billing"]);
    (ctx.attempt, ctx.max_attempts) = (3, 7);
    let run = SANDBOX.invoke_blocking(&tenant, &sig, &ctx);
    assert_eq!(run.outcome, Outcome::Ok, "{}", run.report.output);
    assert_eq!(
        run.directives[0].payload,
        json!({
            "tenant_arg": "org_acme", "context_tenant": "org_acme",
            "settings": {"auto_summaries": true}, "packages": ["forum", "billing"],
            "options": {"level": 3}, "attempt": 3, "max_attempts": 7,
            "signal_name": "forum.thread.created", "payload": {"thread_id": "t1"},
        })
    );

    let context = load_guest("context-shape", "directives = ['shape.context']");
    assert_eq!(context.shape, Shape::SignalContext);
    let run = SANDBOX.invoke_blocking(&context, &sig, &ctx);
    assert_eq!(
        run.directives[0].payload,
        json!({"tenant": "org_acme", "attempt": 3, "signal_id": sig.id})
    );

    let only_signal = load_guest("signal-shape", "directives = ['shape.signal']");
    assert_eq!(only_signal.shape, Shape::Signal);
    let run = SANDBOX.invoke_blocking(&only_signal, &sig, &ctx);
    assert_eq!(
        run.directives[0].payload,
        json!({"tenant": "org_acme", "signal_id": sig.id})
    );
}

#[test]
fn the_trivial_guest_gets_a_receipt_for_its_directive() {
    let handler = load_guest("trivial", "directives = ['bench.noop']");
    let run = run(&handler, "org_acme");
    assert_eq!(run.outcome, Outcome::Ok);
    assert_eq!(run.directives.len(), 1);
    assert_eq!(run.report.directive_count, 1);
    assert!(run.report.peak_memory_bytes > 0);
}

#[test]
fn a_handler_error_is_reported_as_transient_or_permanent_and_leaves_no_directive() {
    let flaky = load_guest("transient-failure", "directives = ['flaky.done']");
    let run = run(&flaky, "org_acme");
    assert_eq!(
        run.outcome,
        Outcome::Transient("upstream unavailable".into())
    );
    assert!(run.outcome.is_retryable());
    assert_eq!(
        run.report.directive_count, 1,
        "the request was accepted during the attempt"
    );
    assert!(
        run.directives.is_empty(),
        "but a failed attempt leaves no directive behind"
    );

    let recovers = load_guest(
        "transient-failure",
        "directives = ['flaky.done']\n[options]\nsucceed_on_attempt = 1",
    );
    let ok = self::run(&recovers, "org_acme");
    assert_eq!(ok.outcome, Outcome::Ok);
    assert_eq!(ok.directives.len(), 1);

    // The benchmarks' mode: only a first attempt of the picked signals fails,
    // and the seed keys the directive.
    let always = load_guest(
        "transient-failure",
        "directives = ['flaky.done']\n[options]\nfail_percent = 100\nseed = 7",
    );
    let first = self::run(&always, "org_acme");
    assert!(first.outcome.is_retryable(), "{:?}", first.outcome);
    let mut retry = delivery(json!({}), &[]);
    retry.attempt = 2;
    let second = SANDBOX.invoke_blocking(
        &always,
        &signal("org_acme", "test.happened", json!({"n": 1})),
        &retry,
    );
    assert_eq!(second.outcome, Outcome::Ok);
    assert_eq!(second.directives[0].idempotency_key, "sig_org_acme_1:7:2");
    let never = load_guest(
        "transient-failure",
        "directives = ['flaky.done']\n[options]\nfail_percent = 0",
    );
    assert_eq!(self::run(&never, "org_acme").outcome, Outcome::Ok);

    let broken = load_guest("permanent-failure", "");
    let run = self::run(&broken, "org_acme");
    assert_eq!(
        run.outcome,
        Outcome::Permanent("payload can never be processed".into())
    );
    assert!(!run.outcome.is_retryable());
}

#[test]
fn a_panic_is_a_trap() {
    let handler = load_guest("panicker", "");
    let run = run(&handler, "org_acme");
    assert!(
        matches!(&run.outcome, Outcome::Trap(m) if m.contains("unreachable")),
        "{:?}",
        run.outcome
    );
    assert!(
        run.report.output.contains("handler panicked on purpose"),
        "{}",
        run.report.output
    );
}

#[test]
fn unbounded_recursion_traps() {
    // Rust keeps its stack in linear memory: running off its bottom is an
    // out-of-bounds access, not wasmtime's call-stack exhaustion.
    let handler = load_guest("deep-recursion", "");
    let run = run(&handler, "org_acme");
    assert!(
        matches!(&run.outcome, Outcome::Trap(m) if m.contains("out of bounds")),
        "{:?}",
        run.outcome
    );
    assert!(
        !format!("{:?}", run.outcome).contains("wasm function"),
        "no backtrace noise"
    );
}

#[test]
fn an_infinite_loop_is_stopped_by_the_timeout() {
    let handler = load_guest("looper", "[limits]\ntimeout_ms = 200");
    let run = run(&handler, "org_acme");
    assert_eq!(run.outcome, Outcome::Timeout);
    assert!(
        run.report.wall_time >= Duration::from_millis(200),
        "{:?}",
        run.report.wall_time
    );
    assert!(
        run.report.wall_time < Duration::from_secs(10),
        "{:?}",
        run.report.wall_time
    );
}

#[test]
fn a_slow_handler_within_its_time_limit_succeeds() {
    let handler = load_guest("slow", "");
    let run = run(&handler, "org_acme");
    assert_eq!(run.outcome, Outcome::Ok, "{}", run.report.output);
    assert!(
        run.report.wall_time >= Duration::from_millis(300),
        "{:?}",
        run.report.wall_time
    );
}

#[test]
fn a_memory_bomb_is_stopped_at_the_cap() {
    let handler = load_guest("memory-bomb", "[limits]\nmemory_mib = 16");
    let run = run(&handler, "org_acme");
    assert_eq!(run.outcome, Outcome::MemoryExceeded);
    assert!(
        run.report.peak_memory_bytes <= 16 << 20,
        "{}",
        run.report.peak_memory_bytes
    );
    assert!(
        run.report.peak_memory_bytes > 8 << 20,
        "it did grow: {}",
        run.report.peak_memory_bytes
    );
}

#[test]
fn an_infinite_loop_runs_out_of_fuel_when_metered() {
    let metered = Sandbox::new(SandboxConfig {
        fuel_metering: true,
        ..SandboxConfig::default()
    })
    .expect("sandbox");
    let handler = load_in(&metered, "looper", "[limits]\nfuel = 5000000");
    let run = metered.invoke_blocking(
        &handler,
        &signal("org_acme", "a.b", json!({})),
        &delivery(json!({}), &[]),
    );
    assert_eq!(run.outcome, Outcome::FuelExhausted);
    assert!(
        run.report.fuel_consumed.is_some_and(|f| f >= 5_000_000),
        "{:?}",
        run.report.fuel_consumed
    );

    let trivial = load_in(&metered, "trivial", "directives = ['bench.noop']");
    let ok = metered.invoke_blocking(
        &trivial,
        &signal("org_acme", "a.b", json!({})),
        &delivery(json!({}), &[]),
    );
    assert_eq!(ok.outcome, Outcome::Ok);
    assert!(ok.report.fuel_consumed.is_some_and(|f| f > 0));
}

#[test]
fn a_fuel_budget_without_metering_is_refused_at_load() {
    let bytes = std::fs::read(guest("looper")).expect("built");
    let err = SANDBOX
        .load_bytes(
            "looper",
            &bytes,
            manifest("[limits]\nfuel = 10"),
            "looper.wasm",
        )
        .expect_err("no metering");
    assert!(matches!(err, LoadError::Limits { .. }), "{err}");
    assert!(err.to_string().contains("looper.wasm"), "{err}");
}

fn refusal(name: &str) -> String {
    let path = guest(name);
    let err = SANDBOX.load_file(&path).expect_err("must be refused");
    assert!(matches!(err, LoadError::ForbiddenImport { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(&path.display().to_string()),
        "names the file: {message}"
    );
    message
}

#[test]
fn a_handler_importing_the_filesystem_or_sockets_loads_and_runs() {
    // Language runtimes import both whether or not the handler uses them;
    // the WASI context, which grants neither, is the wall (the snooping and
    // socket tests below show it holds).
    for name in ["fs-importer", "socket-importer"] {
        let handler = SANDBOX.load_file(&guest(name)).expect(name);
        let run = run(&handler, "org_acme");
        assert_eq!(run.outcome, Outcome::Ok, "{name}: {}", run.report.output);
    }
}

#[test]
fn a_refusal_names_every_forbidden_import() {
    let bytes = wat::parse_str(
        r#"(component
            (import "wasi:http/types@0.2.6" (instance))
            (import "wasi:cli/stdout@0.2.6" (instance))
            (import "acme:backdoor/steal" (instance)))"#,
    )
    .expect("valid component text");
    let err = SANDBOX
        .load_bytes("two-doors", &bytes, Manifest::default(), "two-doors.wasm")
        .expect_err("refused");
    let LoadError::ForbiddenImport {
        origin, imports, ..
    } = &err
    else {
        panic!("{err}");
    };
    assert_eq!(origin, "two-doors.wasm");
    assert_eq!(
        imports,
        &["wasi:http/types@0.2.6", "acme:backdoor/steal"],
        "both refused imports are named, the allowed one is not"
    );
    assert!(
        err.to_string()
            .contains("imports wasi:http/types@0.2.6, acme:backdoor/steal, which")
    );
}

#[test]
fn errors_when_a_handler_imports_wasi_http() {
    // No toolchain of ours makes an HTTP client guest small enough to keep
    // here; the import alone is what the load refuses, before any export.
    let bytes =
        wat::parse_str(r#"(component (import "wasi:http/outgoing-handler@0.2.6" (instance)))"#)
            .expect("valid component text");
    let err = SANDBOX
        .load_bytes(
            "http-client",
            &bytes,
            Manifest::default(),
            "http-client.wasm",
        )
        .expect_err("refused");
    assert!(matches!(err, LoadError::ForbiddenImport { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("imports wasi:http/outgoing-handler@0.2.6"),
        "{err}"
    );
}

#[test]
fn errors_when_a_handler_imports_an_unknown_interface() {
    assert!(refusal("unknown-importer").contains("imports acme:backdoor/steal"));
}

#[test]
fn errors_on_garbage_and_on_core_modules() {
    for (bytes, what) in [
        (b"definitely not wasm".to_vec(), "garbage"),
        (b"\0asm\x01\0\0\0".to_vec(), "an empty core module"),
        (Vec::new(), "an empty file"),
    ] {
        let err = SANDBOX
            .load_bytes("junk", &bytes, Manifest::default(), "junk.wasm")
            .expect_err(what);
        assert!(
            matches!(err, LoadError::NotAComponent { .. }),
            "{what}: {err}"
        );
        assert!(err.to_string().starts_with("junk.wasm: "), "{err}");
    }
}

#[test]
fn errors_on_a_malformed_manifest_naming_the_key() {
    let dir = std::env::temp_dir().join(format!("sighost-manifest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let wasm = dir.join("trivial.wasm");
    std::fs::copy(guest("trivial"), &wasm).expect("copy");
    std::fs::write(dir.join("trivial.toml"), "directivs = ['bench.noop']\n").expect("write");
    let err = SANDBOX.load_file(&wasm).expect_err("typo in manifest");
    assert!(matches!(err, LoadError::Manifest { .. }), "{err}");
    assert!(err.to_string().contains("directivs"), "{err}");
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn the_snooping_guest_sees_no_environment_no_arguments_and_no_files() {
    // The filesystem import is allowed: the WASI context, granting nothing,
    // is the wall.
    let open = &*SANDBOX;
    // The premise: the host process does have environment
    // variables and a readable /etc/passwd.
    assert!(std::env::vars().count() > 0);
    let handler = load_in(open, "snoop", "directives = ['snoop.report']");
    let run = open.invoke_blocking(
        &handler,
        &signal("org_acme", "a.b", json!({})),
        &delivery(json!({}), &[]),
    );
    assert_eq!(run.outcome, Outcome::Ok, "{}", run.report.output);
    let report = &run.directives[0].payload;
    assert_eq!(report["env"], json!([]), "{report}");
    assert_eq!(report["args"], json!([]), "{report}");
    for probe in ["/", ".", "/etc/passwd"] {
        let seen = report["files"][probe].as_str().unwrap_or_default();
        assert!(seen.starts_with("error:"), "{probe}: {seen}");
    }
    // wasi-libc answers "/" when nothing is preopened: its own default, not
    // the host's working directory.
    let host_cwd = std::env::current_dir().expect("cwd").display().to_string();
    assert_ne!(report["cwd"], json!(host_cwd), "{report}");
    assert_eq!(
        report["stdin"],
        json!("0 bytes"),
        "stdin is empty: {report}"
    );
}

#[test]
fn a_guest_using_the_sockets_interface_can_neither_connect_nor_bind_nor_look_up() {
    // The sockets import is allowed: the WASI context, which denies every
    // network use, is what must refuse the connection.
    let open = &*SANDBOX;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    listener.set_nonblocking(true).expect("non-blocking");
    let port = listener.local_addr().expect("address").port();
    let handler = load_in(
        open,
        "socket-importer",
        &format!("[options]\nport = {port}"),
    );
    let run = open.invoke_blocking(
        &handler,
        &signal("org_acme", "a.b", json!({})),
        &delivery(json!({}), &[]),
    );
    assert_eq!(run.outcome, Outcome::Ok, "{}", run.report.output);
    for refused in ["connect failed:", "udp bind failed:", "lookup failed:"] {
        assert!(
            run.report.output.contains(refused),
            "{refused} {}",
            run.report.output
        );
    }
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the listener was reached: {other:?}"),
    }
}

#[test]
fn directive_requests_beyond_the_limit_are_refused_without_failing_the_delivery() {
    let handler = load_guest("directive-flood", "directives = ['flood.item']");
    let run = run(&handler, "org_acme");
    assert_eq!(run.outcome, Outcome::Ok);
    assert_eq!(run.directives.len(), 64);
    assert_eq!(run.report.refused_directives, 1000 - 64);
}

#[test]
fn errors_when_a_directive_is_too_large() {
    let handler = load_guest("oversized-directive", "directives = ['big.payload']");
    let run = run(&handler, "org_acme");
    assert!(
        matches!(&run.outcome, Outcome::Permanent(m) if m.contains("too large")),
        "{:?}",
        run.outcome
    );
    assert!(run.directives.is_empty());
}

#[test]
fn errors_when_a_directive_carries_a_secret() {
    let handler = load_guest("secret-directive", "directives = ['leak.secret']");
    let run = run(&handler, "org_acme");
    assert!(
        matches!(&run.outcome, Outcome::Permanent(m) if m.contains("secret detected") && m.contains("/api_key")),
        "{:?}",
        run.outcome
    );
    assert!(
        !format!("{:?}", run.outcome).contains("sk_live"),
        "the secret is not echoed back"
    );
}

#[test]
fn errors_when_directive_is_not_allowed() {
    let handler = load_guest("forbidden-directive", "directives = ['payments.charge']");
    let run = run(&handler, "org_acme");
    assert!(
        matches!(&run.outcome, Outcome::Permanent(m) if m.contains("not permitted") && m.contains("payments.refund")),
        "{:?}",
        run.outcome
    );
}

#[test]
fn a_directive_belongs_to_the_invoking_tenant_whatever_its_payload_says() {
    let handler = load_guest("cross-tenant", "directives = ['cross.tenant']");
    let run = run(&handler, "org_attacker");
    assert_eq!(run.outcome, Outcome::Ok);
    assert_eq!(run.directives[0].tenant, "org_attacker");
    assert_eq!(
        run.directives[0].payload["tenant"], "org_victim",
        "the payload is data, nothing more"
    );
}

/// The token the `chatty` guest writes to stderr, and its line.
const TOKEN: &str = "abcdefghijklmnopqrstuvwxyz012345";
const TOKEN_LINE: &str = "Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345\n";
const GREETING: &str = "hello from chatty\n";

#[test]
fn guest_output_is_captured_bounded_and_redacted() {
    // The token comes early, inside the bound; 1 MiB of filler follows it.
    let handler = load_guest("chatty", "[limits]\noutput_kib = 8");
    let run = run(&handler, "org_acme");
    assert_eq!(run.outcome, Outcome::Ok);
    let output = &run.report.output;
    assert!(output.starts_with(GREETING), "{}", &output[..64]);
    assert!(run.report.output_truncated);
    assert!(output.len() <= 8 << 10, "{}", output.len());
    assert!(
        output.contains("[REDACTED]") && output.contains("chatty filler"),
        "the token line was kept, redacted, and the filler after it: {}",
        &output[..200]
    );
    assert!(!output.contains(&TOKEN[..4]), "the token is redacted");
}

#[test]
fn a_token_cut_by_the_output_bound_leaves_no_part_of_itself() {
    // The token line is placed so that the 8 KiB bound falls inside it, after
    // `kept` of the token's characters.
    for kept in [1, 4, 8, 15, 16, 20, 31] {
        let prefix = TOKEN_LINE.len() - TOKEN.len() - 1;
        let before = (8 << 10) - GREETING.len() - prefix - kept;
        let handler = load_guest(
            "chatty",
            &format!("[limits]\noutput_kib = 8\n[options]\nbefore = {before}\nafter = 0"),
        );
        let run = run(&handler, "org_acme");
        assert_eq!(run.outcome, Outcome::Ok);
        // Redacted, the line may be short enough to fit whole: whether the
        // report says truncated depends on `kept` (the unit tests of
        // `sandbox/output.rs` pin that rule), so it is not asserted here.
        let output = &run.report.output;
        assert!(output.len() <= 8 << 10, "kept {kept}: {}", output.len());
        let tail = &output[output.len().saturating_sub(80)..];
        assert!(
            !output.contains(&format!(" {}", &TOKEN[..kept])),
            "{kept} characters of the token were kept at the bound: {tail:?}"
        );
    }
}

#[test]
fn the_host_survives_hostile_guests_running_at_once_and_still_runs_a_good_one() {
    let hostile: Vec<Handler> = [
        ("looper", "[limits]\ntimeout_ms = 300"),
        ("memory-bomb", "[limits]\nmemory_mib = 16"),
        ("deep-recursion", ""),
        ("panicker", ""),
    ]
    .iter()
    .map(|(name, toml)| load_guest(name, toml))
    .collect();
    let outcomes: Vec<Outcome> = std::thread::scope(|scope| {
        let runs: Vec<_> = hostile
            .iter()
            .flat_map(|h| [h, h])
            .map(|h| scope.spawn(move || run(h, "org_acme").outcome))
            .collect();
        runs.into_iter()
            .map(|r| r.join().expect("no panic in the host"))
            .collect()
    });
    assert!(outcomes.iter().all(|o| !o.is_ok()), "{outcomes:?}");
    assert!(outcomes.contains(&Outcome::Timeout) && outcomes.contains(&Outcome::MemoryExceeded));

    let good = SANDBOX
        .load_file(&example_handler("audit-trail"))
        .expect("loads");
    let run = run(&good, "org_acme");
    assert_eq!(run.outcome, Outcome::Ok);
    assert_eq!(run.directives.len(), 1);
}

#[test]
fn no_state_survives_between_invocations() {
    // The flood guest fills its directive quota; were the instance reused, the
    // second run would be refused everything.
    let handler = load_guest("directive-flood", "directives = ['flood.item']");
    for _ in 0..2 {
        assert_eq!(run(&handler, "org_acme").directives.len(), 64);
    }
}

#[test]
fn a_reused_pool_slot_keeps_nothing_of_the_tenant_before() {
    // One slot in the pool: every invocation runs in the slot the one before
    // it used. The residue guest looks in its statics and in memory grown
    // past its initial size for what the run before left (the other tenant's
    // name), and fails naming what it found.
    let sandbox = Sandbox::new(SandboxConfig {
        max_concurrent_instances: 1,
        ..SandboxConfig::default()
    })
    .expect("sandbox");
    let handler = load_in(&sandbox, "residue", "");
    for tenant in ["org_a", "org_b", "org_a", "org_b"] {
        let run = sandbox.invoke_blocking(
            &handler,
            &signal(tenant, "test.happened", json!({})),
            &delivery(json!({}), &[]),
        );
        assert_eq!(run.outcome, Outcome::Ok, "{tenant}: {run:?}");
    }
}

#[test]
fn a_handler_name_must_be_simple() {
    let bytes = std::fs::read(guest("trivial")).expect("built");
    let err = SANDBOX
        .load_bytes("../etc", &bytes, Manifest::default(), "x")
        .expect_err("bad name");
    assert!(matches!(err, LoadError::InvalidName { .. }), "{err}");
}

#[test]
fn a_manifest_cannot_raise_memory_above_the_host_maximum() {
    let bytes = std::fs::read(guest("trivial")).expect("built");
    let err = SANDBOX
        .load_bytes(
            "trivial",
            &bytes,
            manifest("[limits]\nmemory_mib = 100000"),
            "trivial.wasm",
        )
        .expect_err("too much memory");
    assert!(
        err.to_string().contains("above this host's maximum"),
        "{err}"
    );
}

#[test]
fn a_guest_sleeping_in_a_host_call_is_stopped_at_its_deadline() {
    // The guest asks for a 60 s sleep; the limit is 300 ms. Before the async
    // sandbox it slept the whole 60 s, blocking its thread.
    let handler = load_guest(
        "sleeper",
        "[limits]\ntimeout_ms = 300\n[options]\nsleep_ms = 60000",
    );
    let run = run(&handler, "org_acme");
    assert_eq!(run.outcome, Outcome::Timeout);
    let took = run.report.wall_time;
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(
        took < Duration::from_secs(30),
        "ran the guest's sleep: {took:?}"
    );
}

#[test]
fn a_guest_sleeping_within_its_limit_succeeds() {
    let handler = load_guest("sleeper", "[options]\nsleep_ms = 50");
    let run = run(&handler, "org_acme");
    assert_eq!(run.outcome, Outcome::Ok, "{}", run.report.output);
    assert!(run.report.wall_time >= Duration::from_millis(50));
}

#[test]
fn waiting_guests_hold_no_thread() {
    // One thread runs everything: twenty guests asleep inside a host call
    // and then two hundred good invocations, which must all finish while
    // the sleepers still sleep.
    let sleeper = std::sync::Arc::new(load_guest(
        "sleeper",
        "[limits]\ntimeout_ms = 60000\n[options]\nsleep_ms = 60000",
    ));
    let good = std::sync::Arc::new(load_guest("trivial", "directives = ['bench.noop']"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let sandbox: &'static Sandbox = &SANDBOX;
    runtime.block_on(async {
        let sleepers: Vec<_> = (0..20)
            .map(|_| {
                let sleeper = sleeper.clone();
                tokio::spawn(async move {
                    let signal = signal("org_sleepy", "test.happened", json!({}));
                    sandbox
                        .invoke(&sleeper, &signal, &delivery(json!({}), &[]))
                        .await
                })
            })
            .collect();
        tokio::task::yield_now().await; // let every sleeper start and block
        for _ in 0..200 {
            let signal = signal("org_acme", "test.happened", json!({"n": 1}));
            let run = sandbox
                .invoke(&good, &signal, &delivery(json!({}), &[]))
                .await;
            assert_eq!(run.outcome, Outcome::Ok);
        }
        assert!(
            sleepers.iter().all(|s| !s.is_finished()),
            "the sleepers are still waiting"
        );
        for sleeper in sleepers {
            sleeper.abort();
        }
    });
}

#[test]
fn a_guest_spinning_on_stream_calls_is_stopped_and_its_output_bounded() {
    let handler = load_guest(
        "stream-spinner",
        "[limits]\ntimeout_ms = 300\noutput_kib = 4",
    );
    let run = run(&handler, "org_acme");
    assert_eq!(run.outcome, Outcome::Timeout);
    assert!(run.report.output_truncated);
    assert!(
        run.report.output.len() <= 4 << 10,
        "{}",
        run.report.output.len()
    );
    assert!(
        run.report.output.starts_with("read 0 bytes\n"),
        "stdin is empty"
    );
}

#[test]
fn a_start_function_that_loops_is_refused_saying_it_timed_out() {
    let bytes = std::fs::read(guest("busy-start")).expect("built");
    let err = SANDBOX
        .load_bytes("busy-start", &bytes, Manifest::default(), "busy-start.wasm")
        .expect_err("never finishes starting");
    assert!(matches!(err, LoadError::Instantiate { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "busy-start.wasm: cannot be instantiated: timed out after 2000 ms while running its \
         start function (the host's load budget, `[sandbox] load_timeout_ms`)"
    );
}

#[test]
fn a_start_function_that_waits_is_refused_within_the_load_budget() {
    let quick = Sandbox::new(SandboxConfig {
        load_timeout: Duration::from_millis(300),
        ..SandboxConfig::default()
    })
    .expect("sandbox");
    let bytes = std::fs::read(guest("sleepy-start")).expect("built");
    let started = std::time::Instant::now();
    // The manifest's own limit does not lengthen the load budget.
    let err = quick
        .load_bytes(
            "sleepy-start",
            &bytes,
            manifest("[limits]\ntimeout_ms = 60000"),
            "sleepy-start.wasm",
        )
        .expect_err("sleeps 60 s while starting");
    let took = started.elapsed();
    assert!(
        err.to_string()
            .contains("timed out after 300 ms while running its start function"),
        "{err}"
    );
    assert!(took < Duration::from_secs(30), "slept through: {took:?}");
}

#[test]
fn a_static_constructor_that_waits_is_stopped_at_the_deadline() {
    // Constructors of a wasip2 cdylib run when an export is first called:
    // inside the invocation, under its limit.
    let handler = load_guest("sleepy-constructor", "[limits]\ntimeout_ms = 300");
    let run = run(&handler, "org_acme");
    assert_eq!(run.outcome, Outcome::Timeout);
    assert!(
        run.report.wall_time < Duration::from_secs(30),
        "{:?}",
        run.report.wall_time
    );
}

#[test]
fn exit_zero_ends_the_handler_successfully_and_exit_nonzero_fails_it() {
    let zero = load_guest("exiter", "directives = ['exit.before']");
    let done = run(&zero, "org_acme");
    assert_eq!(done.outcome, Outcome::Ok, "exit(0) means done");
    assert_eq!(
        done.directives.len(),
        1,
        "what it asked before exiting stands"
    );

    // WASI 0.2's exit takes ok or err: any other status arrives as 1.
    let three = load_guest(
        "exiter",
        "directives = ['exit.before']\n[options]\ncode = 3",
    );
    let failed = run(&three, "org_acme");
    assert_eq!(
        failed.outcome,
        Outcome::Trap("the handler called exit(1) instead of returning".into())
    );
    assert!(failed.outcome.is_retryable());
    assert!(failed.directives.is_empty(), "a failed attempt leaves none");
}

#[test]
fn random_bytes_are_capped_below_the_guest_memory_limit() {
    // 48 MiB asked in one call: the host would allocate it outside the
    // guest's memory cap, so the call traps instead.
    let handler = load_guest("random-hog", "");
    let run = run(&handler, "org_acme");
    let Outcome::Trap(message) = &run.outcome else {
        panic!("expected a trap, got {:?}", run.outcome);
    };
    assert!(
        message.contains("requested len 50331648 exceeds limit 1048576"),
        "{message}"
    );
    assert!(
        run.report.peak_memory_bytes < 16 << 20,
        "{}",
        run.report.peak_memory_bytes
    );
}

#[test]
fn a_guest_hoarding_host_resources_is_stopped_at_the_table_cap() {
    let handler = load_guest("resource-hoarder", "");
    let run = run(&handler, "org_acme");
    let Outcome::Trap(message) = &run.outcome else {
        panic!("expected a trap, got {:?}", run.outcome);
    };
    assert!(message.contains("resource table"), "{message}");
}

/// A valid component, given as text, that is over one of the pool's limits.
fn over_the_pool(wat: &str) -> String {
    let bytes = wat::parse_str(wat).expect("valid component text");
    let err = SANDBOX
        .load_bytes("big", &bytes, Manifest::default(), "big.wasm")
        .expect_err("over a pool limit");
    assert!(matches!(err, LoadError::OverLimit { .. }), "{err}");
    err.to_string()
}

#[test]
fn a_component_over_a_pool_limit_is_refused_naming_the_limit_and_the_setting() {
    let instances = "(core instance (instantiate $m))".repeat(38);
    assert_eq!(
        over_the_pool(&format!("(component (core module $m) {instances})")),
        "big.wasm: over this host's limits: the component needs 38 core module instances, \
         above this host's maximum of 16 per component; \
         `[sandbox] max_core_instances_per_component` raises it"
    );
    // 16384 pages: 1 GiB of memory declared at start.
    let memory = over_the_pool(
        "(component (core module $m (memory 16384)) (core instance (instantiate $m)))",
    );
    assert!(
        memory.contains("needs 1073741824 bytes of linear memory at start")
            && memory.contains("`[sandbox] max_memory_mib`"),
        "{memory}"
    );
    let table = over_the_pool(
        "(component (core module $m (table 10000000 funcref)) (core instance (instantiate $m)))",
    );
    assert!(
        table.contains("needs 10000000 table elements at start")
            && table.contains("`[sandbox] max_table_elements`"),
        "{table}"
    );
}
