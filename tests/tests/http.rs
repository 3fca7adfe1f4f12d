//! The HTTP API of a real `sighost run`, with a real handler built from
//! source: signals in (sighost JSON, CloudEvents, and the CLI alongside),
//! deliveries completed, directives executed; tenants kept apart by their
//! tokens; bad requests refused with nothing stored; operator endpoints for
//! the admin token only; metrics, health and readiness.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Value, json};
use sighost::fair::Claim;
use sighost::store::{Decision, DeliveryFilter, DeliveryState, NewSignal};
use sighost::{HostConfig, Sighost};
use sighost_tests::conformance::result;
use sighost_tests::{example_handler, guest, sighost_binary};

const ADMIN: &str = "admin-token-for-tests-0001";
const ACME: &str = "acme-token-for-tests-0001";
const BETA: &str = "beta-token-for-tests-0001";
/// Given through SIGHOST_TENANT_TOKENS rather than the file.
const GAMMA: &str = "gamma-token-from-env-0001";
/// A token for a tenant that was never created.
const GHOST: &str = "ghost-token-from-env-0001";
const PATIENCE: Duration = Duration::from_secs(60);

/// A `sighost run` in a scratch directory of its own, stopped on drop.
struct Host {
    child: Child,
    dir: PathBuf,
    base: String,
    addr: String,
    agent: ureq::Agent,
}

impl Host {
    /// Starts a host with the audit-trail handler (every signal → one
    /// `audit.record` directive), tenants org_acme and org_beta, and
    /// directives logged to `directives.jsonl`.
    fn start(name: &str) -> Self {
        Self::start_with(name, "")
    }

    /// [`Host::start`] with more `[http]` settings (TOML lines).
    fn start_with(name: &str, http_settings: &str) -> Self {
        Self::start_with_guests(name, http_settings, &[])
    }

    /// [`Host::start_with`], with test guests loaded beside audit-trail:
    /// (guest, subscription).
    fn start_with_guests(name: &str, http_settings: &str, guests: &[(&str, &str)]) -> Self {
        let dir = std::env::temp_dir().join(format!("sighost-http-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let handlers = dir.join("handlers");
        std::fs::create_dir_all(&handlers).expect("handlers dir");
        for (name, subscription) in guests {
            std::fs::copy(guest(name), handlers.join(format!("{name}.wasm"))).expect("copy guest");
            std::fs::write(
                handlers.join(format!("{name}.toml")),
                format!("subscriptions = [\"{subscription}\"]\n"),
            )
            .expect("guest manifest");
        }
        let wasm = example_handler("audit-trail");
        std::fs::copy(&wasm, handlers.join("audit-trail.wasm")).expect("copy handler");
        std::fs::copy(
            wasm.with_extension("toml"),
            handlers.join("audit-trail.toml"),
        )
        .expect("copy manifest");
        std::fs::write(
            dir.join("sighost.toml"),
            format!(
                r#"
                data_dir = "data"
                handlers_dir = "handlers"
                [limits]
                signal_payload_kib = 4
                [workers]
                fast_retries = true
                poll_interval_ms = 50
                [runner]
                fast_retries = true
                [executors."*"]
                type = "log"
                path = "directives.jsonl"
                [http]
                listen = "127.0.0.1:0"
                {http_settings}
                [tokens]
                admin = "{ADMIN}"
                [tokens.tenants]
                org_acme = "{ACME}"
                org_beta = ["{BETA}"]
                [logging]
                format = "json"
                level = "info,sighost=debug"
                "#
            ),
        )
        .expect("write config");
        for tenant in ["org_acme", "org_beta", "org_gamma"] {
            let output = cli(&dir, &["tenants", "create", tenant]);
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }

        let log = std::fs::File::create(dir.join("run.log")).expect("log file");
        let child = command(&dir)
            .env(
                "SIGHOST_TENANT_TOKENS",
                format!("org_gamma={GAMMA} org_ghost={GHOST}"),
            )
            .arg("run")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn sighost run");
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let mut host = Self {
            child,
            dir,
            base: String::new(),
            addr: String::new(),
            agent,
        };
        host.addr = host.wait_for_listen_address();
        host.base = format!("http://{}", host.addr);
        host
    }

    /// The address `run` logs once it listens (it was given port 0).
    fn wait_for_listen_address(&mut self) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            for event in self.log_events() {
                if event["fields"]["message"] == "HTTP API listening" {
                    return event["fields"]["addr"]
                        .as_str()
                        .expect("an address")
                        .to_owned();
                }
            }
            if let Some(status) = self.child.try_wait().expect("poll child") {
                panic!("sighost run exited with {status}: {}", self.log());
            }
            assert!(Instant::now() < deadline, "never listened: {}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("run.log")).unwrap_or_default()
    }

    fn log_events(&self) -> Vec<Value> {
        self.log()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Body>) -> Answer {
        let url = format!("{}{path}", self.base);
        let auth = token.map(|t| format!("Bearer {t}"));
        let response = match (method, body) {
            ("GET" | "DELETE", None) => {
                let mut request = match method {
                    "GET" => self.agent.get(&url),
                    _ => self.agent.delete(&url),
                };
                if let Some(auth) = &auth {
                    request = request.header("Authorization", auth);
                }
                request.call()
            }
            ("POST" | "PUT", body) => {
                let mut request = match method {
                    "POST" => self.agent.post(&url),
                    _ => self.agent.put(&url),
                };
                if let Some(auth) = &auth {
                    request = request.header("Authorization", auth);
                }
                let body = body.unwrap_or(Body::Json(json!({})));
                match body {
                    Body::Json(value) => request
                        .content_type("application/json")
                        .send(value.to_string()),
                    Body::Raw(content_type, text) => request.content_type(content_type).send(text),
                }
            }
            _ => panic!("unsupported call {method} with a body"),
        };
        let mut response = response.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap_or("").to_owned())
        };
        let (www_authenticate, retry_after) = (header("www-authenticate"), header("retry-after"));
        let text = response.body_mut().read_to_string().expect("read body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer {
            status,
            body,
            www_authenticate,
            retry_after,
        }
    }

    fn get(&self, path: &str, token: &str) -> Answer {
        self.call("GET", path, Some(token), None)
    }

    fn post(&self, path: &str, token: &str, body: Value) -> Answer {
        self.call("POST", path, Some(token), Some(Body::Json(body)))
    }

    fn emit(&self, token: &str, body: Value) -> Answer {
        self.post("/v1/signals", token, body)
    }

    /// The caller's records of one kind, e.g. `list("signals", ACME)`.
    fn list(&self, kind: &str, token: &str) -> Vec<Value> {
        let answer = self.get(&format!("/v1/{kind}?limit=1000"), token);
        assert_eq!(answer.status, 200, "{answer:?}");
        answer.body[kind].as_array().expect("a list").clone()
    }

    /// Waits until `done` holds of the caller's records of `kind`.
    fn wait_for(&self, kind: &str, token: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let records = self.list(kind, token);
            if done(&records) {
                return records;
            }
            assert!(
                Instant::now() < deadline,
                "{kind} never got there: {records:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

enum Body {
    Json(Value),
    Raw(&'static str, String),
}

#[derive(Debug)]
struct Answer {
    status: u16,
    body: Value,
    www_authenticate: Option<String>,
    retry_after: Option<String>,
}

impl Answer {
    /// The `error` of a JSON error body.
    fn error(&self) -> &str {
        self.body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no JSON error in {self:?}"))
    }
}

/// `sighost --config <dir>/sighost.toml` with none of the caller's SIGHOST_*.
fn command(dir: &Path) -> Command {
    let mut command = Command::new(sighost_binary());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SIGHOST_") {
            command.env_remove(name);
        }
    }
    command
        .current_dir(dir)
        .arg("--config")
        .arg(dir.join("sighost.toml"));
    command
}

fn cli(dir: &Path, args: &[&str]) -> std::process::Output {
    command(dir).args(args).output().expect("run sighost")
}

fn ids(records: &[Value], field: &str) -> Vec<String> {
    let mut ids: Vec<String> = records
        .iter()
        .map(|r| match &r[field] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    ids.sort();
    ids
}

#[test]
fn emits_over_http_and_the_cli_and_the_runner_executes_the_directives() {
    let host = Host::start("flow");

    let created = host.emit(
        ACME,
        json!({
            "name": "forum.thread.created",
            "payload": {"thread_id": "t1", "marker": "payload-marker-7f3a"},
            "dedupe_key": "thread-t1",
            "actor": {"type": "user", "id": "u_42"},
        }),
    );
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.body["status"], "created");
    assert_eq!(created.body["signal"]["tenant"], "org_acme");
    assert_eq!(created.body["signal"]["source"], "http");
    assert_eq!(created.body["deliveries"], 1);

    let again = host.emit(
        ACME,
        json!({"name": "forum.thread.created", "payload": {"thread_id": "t1"}, "dedupe_key": "thread-t1"}),
    );
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.body["status"], "existing");
    assert_eq!(again.body["signal"]["id"], created.body["signal"]["id"]);

    let event = json!({
        "specversion": "1.0",
        "id": "evt-1",
        "source": "https://billing.example/invoices",
        "type": "billing.invoice.paid",
        "time": "2026-11-26T12:00:00Z",
        "subject": "invoice:inv_9",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "data": {"invoice": "inv_9"},
    });
    let cloud = host.call(
        "POST",
        "/v1/signals",
        Some(ACME),
        Some(Body::Raw("application/cloudevents+json", event.to_string())),
    );
    assert_eq!(cloud.status, 201, "{cloud:?}");
    let signal = &cloud.body["signal"];
    assert_eq!(signal["name"], "billing.invoice.paid");
    assert_eq!(signal["payload"], json!({"invoice": "inv_9"}));
    assert_eq!(
        signal["dedupe_key"],
        "https://billing.example/invoices evt-1"
    );
    assert_eq!(signal["source"], "https://billing.example/invoices");
    assert_eq!(signal["subject"], json!({"type": "invoice", "id": "inv_9"}));
    assert_eq!(signal["occurred_at"], "2026-11-26T12:00:00Z");
    assert_eq!(signal["metadata"]["traceparent"], event["traceparent"]);
    let redelivered = host.call(
        "POST",
        "/v1/signals",
        Some(ACME),
        Some(Body::Raw("application/cloudevents+json", event.to_string())),
    );
    assert_eq!(
        redelivered.status, 200,
        "the same event again is the same signal"
    );

    // The CLI emits into the same store; the running host picks it up.
    let output = cli(
        &host.dir,
        &[
            "emit",
            "forum.post.created",
            r#"{"post": "p1"}"#,
            "--tenant",
            "org_acme",
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let from_cli: Value = serde_json::from_slice(&output.stdout).expect("emit prints JSON");
    assert_eq!(from_cli["status"], "created");

    let signals = host.list("signals", ACME);
    assert_eq!(signals.len(), 3, "{signals:?}");
    let deliveries = host.wait_for("deliveries", ACME, |d| {
        d.len() == 3 && d.iter().all(|d| d["state"] == "completed")
    });
    assert_eq!(ids(&deliveries, "signal_id"), ids(&signals, "id"));
    let directives = host.wait_for("directives", ACME, |d| {
        d.len() == 3 && d.iter().all(|d| d["state"] == "succeeded")
    });
    assert!(directives.iter().all(|d| d["name"] == "audit.record"));
    assert_eq!(ids(&directives, "signal_id"), ids(&signals, "id"));

    // One delivery in detail, with its attempt.
    let delivery = host.get(&format!("/v1/deliveries/{}", deliveries[0]["id"]), ACME);
    assert_eq!(delivery.status, 200, "{delivery:?}");
    assert_eq!(delivery.body["attempts"][0]["outcome"], "ok");
    let directive = host.get(
        &format!(
            "/v1/directives/{}",
            directives[0]["id"].as_str().expect("id")
        ),
        ACME,
    );
    assert_eq!(directive.status, 200, "{directive:?}");

    // The catch-all executor wrote each directive to its file.
    let executed =
        std::fs::read_to_string(host.dir.join("directives.jsonl")).expect("executor log");
    let executed: Vec<Value> = executed
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(ids(&executed, "id"), ids(&directives, "id"));

    // Filters.
    let by_name = host.get("/v1/signals?name=billing.invoice.paid", ACME);
    assert_eq!(by_name.body["signals"].as_array().map(Vec::len), Some(1));
    let completed = host.get("/v1/deliveries?state=completed&limit=2", ACME);
    assert_eq!(
        completed.body["deliveries"].as_array().map(Vec::len),
        Some(2)
    );
    let bad_state = host.get("/v1/deliveries?state=done", ACME);
    assert_eq!(bad_state.status, 400);
    assert!(bad_state.error().contains("done"), "{bad_state:?}");

    // Metrics count what happened; health and readiness answer.
    let metrics = host.call("GET", "/metrics", None, None);
    assert_eq!(metrics.status, 200);
    let text = metrics.body.as_str().expect("text").to_owned();
    assert!(
        text.contains("sighost_deliveries{state=\"completed\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("sighost_directives{state=\"succeeded\"} 3"),
        "{text}"
    );
    assert!(text.contains("sighost_handlers_loaded 1"), "{text}");
    assert!(
        text.contains("sighost_http_signals_total{status=\"created\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("sighost_http_signals_total{status=\"existing\"} 2"),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "sighost_http_request_duration_seconds_count",
            &[("route", "/v1/signals"), ("code", "201")]
        ),
        Some(2.0),
        "{text}"
    );
    let health = host.call("GET", "/healthz", None, None);
    assert_eq!(
        (health.status, &health.body),
        (200, &json!({"status": "ok"}))
    );
    let ready = host.call("GET", "/readyz", None, None);
    assert_eq!(
        (ready.status, &ready.body),
        (200, &json!({"status": "ready"}))
    );

    // Requests are logged, structured; payloads and tokens never are.
    let log = host.log();
    assert!(
        host.log_events()
            .iter()
            .any(|e| e["fields"]["message"] == "http request" && e["fields"]["status"] == 201),
        "{log}"
    );
    for secret in ["payload-marker-7f3a", ADMIN, ACME, BETA, GAMMA, GHOST] {
        assert!(!log.contains(secret), "{secret} is in the log:\n{log}");
    }
}

#[test]
fn a_tenant_token_reaches_only_its_own_tenant() {
    let host = Host::start("tenancy");
    let acme = host.emit(
        ACME,
        json!({"name": "forum.thread.created", "payload": {"n": 1}}),
    );
    assert_eq!(acme.status, 201, "{acme:?}");
    let beta = host.emit(
        BETA,
        json!({"name": "forum.thread.created", "payload": {"n": 2}}),
    );
    assert_eq!(beta.status, 201, "{beta:?}");
    assert_eq!(beta.body["signal"]["tenant"], "org_beta");
    let gamma = host.emit(GAMMA, json!({"name": "forum.thread.created"}));
    assert_eq!(
        gamma.status, 201,
        "a token from the environment works: {gamma:?}"
    );
    assert_eq!(gamma.body["signal"]["tenant"], "org_gamma");
    let beta_id = beta.body["signal"]["id"].as_str().expect("id").to_owned();

    // A cannot emit for B: a body or event naming a tenant is refused.
    let named = host.emit(
        ACME,
        json!({"name": "forum.thread.created", "tenant": "org_beta"}),
    );
    assert_eq!(named.status, 400, "{named:?}");
    assert!(named.error().contains("token"), "{named:?}");
    let event = json!({"specversion": "1.0", "id": "x", "source": "s", "type": "a.b", "tenant": "org_beta"});
    let named_event = host.call(
        "POST",
        "/v1/signals",
        Some(ACME),
        Some(Body::Raw("application/cloudevents+json", event.to_string())),
    );
    assert_eq!(named_event.status, 400, "{named_event:?}");
    assert_eq!(
        host.list("signals", BETA).len(),
        1,
        "nothing was emitted for B"
    );

    // Each sees only its own records, once the work is done.
    host.wait_for("directives", ACME, |d| {
        d.len() == 1 && d[0]["state"] == "succeeded"
    });
    host.wait_for("directives", BETA, |d| {
        d.len() == 1 && d[0]["state"] == "succeeded"
    });
    for kind in ["signals", "deliveries", "directives"] {
        let records = host.list(kind, ACME);
        assert_eq!(records.len(), 1, "{kind}: {records:?}");
        assert!(
            records.iter().all(|r| r["tenant"] == "org_acme"),
            "{kind}: {records:?}"
        );
        let asked_for_b = host.get(&format!("/v1/{kind}?tenant=org_beta"), ACME);
        assert_eq!(asked_for_b.status, 400, "{kind}: {asked_for_b:?}");
    }
    let their_signal = host.get(&format!("/v1/signals/{beta_id}"), ACME);
    assert_eq!(their_signal.status, 404, "{their_signal:?}");
    let their_deliveries = host.get(&format!("/v1/deliveries?signal_id={beta_id}"), ACME);
    assert_eq!(their_deliveries.body["deliveries"], json!([]));
    let their_directives = host.get(&format!("/v1/directives?signal_id={beta_id}"), ACME);
    assert_eq!(their_directives.body["directives"], json!([]));
    let b_delivery = &host.list("deliveries", BETA)[0];
    let not_mine = host.get(&format!("/v1/deliveries/{}", b_delivery["id"]), ACME);
    assert_eq!(not_mine.status, 404, "{not_mine:?}");
    let b_directive = &host.list("directives", BETA)[0];
    let not_mine = host.get(
        &format!("/v1/directives/{}", b_directive["id"].as_str().expect("id")),
        ACME,
    );
    assert_eq!(not_mine.status, 404, "{not_mine:?}");
}

#[test]
fn refuses_missing_wrong_and_misplaced_tokens() {
    let host = Host::start("tokens");
    for path in [
        "/v1/signals",
        "/v1/deliveries",
        "/v1/directives",
        "/v1/admin/tenants",
    ] {
        let none = host.call("GET", path, None, None);
        assert_eq!(none.status, 401, "{path}: {none:?}");
        assert_eq!(none.www_authenticate.as_deref(), Some("Bearer"));
        assert!(none.error().contains("Bearer"), "{none:?}");
        let wrong = host.get(path, "not-a-token-we-know-0001");
        assert_eq!(wrong.status, 401, "{path}: {wrong:?}");
        let almost = host.get(path, &ACME[..ACME.len() - 1]);
        assert_eq!(almost.status, 401, "{path}: {almost:?}");
    }
    let emit = host.call(
        "POST",
        "/v1/signals",
        None,
        Some(Body::Json(json!({"name": "forum.thread.created"}))),
    );
    assert_eq!(emit.status, 401, "{emit:?}");
    let mut basic = host
        .agent
        .get(format!("{}/v1/signals", host.base))
        .header("Authorization", format!("Basic {ACME}"))
        .call()
        .expect("answered");
    assert_eq!(basic.status().as_u16(), 401);
    let text = basic.body_mut().read_to_string().expect("body");
    assert!(text.contains("Bearer"), "{text}");
    let admin_as_tenant = host.emit(ADMIN, json!({"name": "forum.thread.created"}));
    assert_eq!(admin_as_tenant.status, 403, "{admin_as_tenant:?}");
    let ghost = host.emit(GHOST, json!({"name": "forum.thread.created"}));
    assert_eq!(ghost.status, 404, "{ghost:?}");
    assert!(ghost.error().contains("org_ghost"), "{ghost:?}");
    assert!(host.list("signals", ACME).is_empty(), "nothing was stored");
}

#[test]
fn refuses_bad_requests_and_stores_nothing() {
    let host = Host::start("bad-requests");
    let cases: Vec<(&str, Body, u16, &str)> = vec![
        (
            "malformed JSON",
            Body::Raw("application/json", "{\"name\": ".into()),
            400,
            "JSON",
        ),
        (
            "not an object",
            Body::Raw("application/json", "17".into()),
            400,
            "object",
        ),
        (
            "a batch of non-objects",
            Body::Raw("application/json", "[1, 2]".into()),
            422,
            "nothing was stored",
        ),
        (
            "wrong content type",
            Body::Raw("text/plain", "{}".into()),
            415,
            "Content-Type",
        ),
        ("no name", Body::Json(json!({"payload": {}})), 400, "name"),
        (
            "invalid name",
            Body::Json(json!({"name": "Forum Thread"})),
            400,
            "Forum Thread",
        ),
        (
            "unknown field",
            Body::Json(json!({"name": "a.b", "colour": "red"})),
            400,
            "colour",
        ),
        (
            "payload not an object",
            Body::Json(json!({"name": "a.b", "payload": 3})),
            400,
            "object",
        ),
        (
            "payload over the signal limit",
            Body::Json(json!({"name": "a.b", "payload": {"blob": "x".repeat(6 << 10)}})),
            413,
            "limit",
        ),
        (
            "body over the body limit",
            Body::Json(json!({"name": "a.b", "payload": {"blob": "x".repeat(30 << 10)}})),
            413,
            "limit",
        ),
        (
            "a credential in the payload",
            Body::Json(json!({"name": "a.b", "payload": {"password": "hunter2"}})),
            422,
            "credential",
        ),
        (
            "CloudEvent without an id",
            Body::Raw(
                "application/cloudevents+json",
                json!({"specversion": "1.0", "source": "s", "type": "a.b"}).to_string(),
            ),
            400,
            "id",
        ),
        (
            "CloudEvents batch",
            Body::Raw("application/cloudevents-batch+json", "[]".into()),
            400,
            "empty",
        ),
    ];
    for (what, body, status, needle) in cases {
        let answer = host.call("POST", "/v1/signals", Some(ACME), Some(body));
        assert_eq!(answer.status, status, "{what}: {answer:?}");
        assert!(answer.error().contains(needle), "{what}: {answer:?}");
    }

    // A declared length over the limit is refused before any byte is read.
    let head = oversized_request(&host.addr, 10 << 20);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(head.contains("\"error\""), "{head}");

    assert!(host.list("signals", ACME).is_empty(), "nothing was stored");
    let status = cli(&host.dir, &["status", "--json"]);
    let stats: Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    assert_eq!(stats["deliveries"], json!([]), "{stats}");
    let unknown = host.call("GET", "/v1/nothing-here", Some(ACME), None);
    assert_eq!(unknown.status, 404);
    assert!(unknown.error().contains("endpoint"));
}

/// After refusing a body over the limit, the server keeps the connection for
/// the client's next request instead of closing it: a client that reuses a
/// kept-alive connection just as the server closes it gets no answer at all
/// (seen as a rare "Peer disconnected" in the test above).
#[test]
fn a_refused_oversized_body_leaves_the_connection_usable() {
    let host = Host::start("oversized-keep-alive");
    let mut stream = TcpStream::connect(&host.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let oversized = json!({"name": "a.b", "payload": {"blob": "x".repeat(30 << 10)}});
    for (body, status) in [(oversized.to_string(), "413"), ("[1, 2]".to_owned(), "422")] {
        let request = format!(
            "POST /v1/signals HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {ACME}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            host.addr,
            body.len()
        );
        // Half now, half once the server has had time to decide on the head.
        let (first, rest) = request.as_bytes().split_at(request.len() / 2);
        stream.write_all(first).expect("send");
        std::thread::sleep(Duration::from_millis(200));
        stream.write_all(rest).expect("send the rest");
        let answer = read_answer(&mut stream);
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{answer}"
        );
        assert!(
            !answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
    }
}

/// Reads one JSON answer from `stream`: until its body's closing brace.
fn read_answer(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).trim_end().ends_with('}') {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// Sends only the head of a POST declaring `length` bytes, and returns what
/// comes back.
fn oversized_request(addr: &str, length: usize) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "POST /v1/signals HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ACME}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\
         Expect: 100-continue\r\n\r\n"
    )
    .expect("write head");
    // Up to the JSON body only: the server may keep the connection open,
    // waiting for a body that never comes.
    read_answer(&mut stream)
}

#[test]
fn operator_endpoints_take_the_admin_token_only() {
    let host = Host::start("admin");
    let calls: [(&str, &str, Option<Value>); 8] = [
        ("POST", "/v1/admin/tenants", Some(json!({"id": "org_new"}))),
        ("GET", "/v1/admin/tenants", None),
        (
            "PUT",
            "/v1/admin/tenants/org_acme/settings",
            Some(json!({"region": "eu"})),
        ),
        (
            "PUT",
            "/v1/admin/tenants/org_acme/packages/forum",
            Some(json!({})),
        ),
        ("DELETE", "/v1/admin/tenants/org_acme/packages/forum", None),
        (
            "POST",
            "/v1/admin/replay",
            Some(json!({"tenant": "org_acme"})),
        ),
        ("POST", "/v1/admin/retry", Some(json!({}))),
        ("POST", "/v1/admin/cancel", Some(json!({"deliveries": [1]}))),
    ];
    for (method, path, body) in &calls {
        let answer = host.call(method, path, Some(ACME), body.clone().map(Body::Json));
        assert_eq!(answer.status, 403, "{method} {path}: {answer:?}");
        assert!(answer.error().contains("admin"), "{answer:?}");
    }
    let tenants = cli(&host.dir, &["tenants", "list", "--json"]);
    let text = String::from_utf8_lossy(&tenants.stdout);
    assert!(
        !text.contains("org_new"),
        "a tenant token created nothing: {text}"
    );

    let created = host.post(
        "/v1/admin/tenants",
        ADMIN,
        json!({"id": "org_new", "settings": {"plan": "pro"}}),
    );
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.body["settings"], json!({"plan": "pro"}));
    let twice = host.post("/v1/admin/tenants", ADMIN, json!({"id": "org_new"}));
    assert_eq!(twice.status, 409, "{twice:?}");
    let installed = host.call(
        "PUT",
        "/v1/admin/tenants/org_new/packages/forum",
        Some(ADMIN),
        Some(Body::Raw("application/json", String::new())),
    );
    assert_eq!(installed.status, 200, "{installed:?}");
    assert_eq!(installed.body["packages"], json!(["forum"]));
    let settings = host.call(
        "PUT",
        "/v1/admin/tenants/org_new/settings",
        Some(ADMIN),
        Some(Body::Json(json!({"plan": "free"}))),
    );
    assert_eq!(
        settings.body["settings"],
        json!({"plan": "free"}),
        "{settings:?}"
    );
    let uninstalled = host.call(
        "DELETE",
        "/v1/admin/tenants/org_new/packages/forum",
        Some(ADMIN),
        None,
    );
    assert_eq!(uninstalled.body["packages"], json!([]), "{uninstalled:?}");
    let unknown = host.call(
        "PUT",
        "/v1/admin/tenants/org_nobody/settings",
        Some(ADMIN),
        Some(Body::Json(json!({}))),
    );
    assert_eq!(unknown.status, 404, "{unknown:?}");
    assert!(unknown.error().contains("org_nobody"), "{unknown:?}");
    let listed = host.get("/v1/admin/tenants", ADMIN);
    assert_eq!(
        listed.body["tenants"].as_array().map(Vec::len),
        Some(4),
        "{listed:?}"
    );

    // Replay, retry and cancel on real work.
    let emitted = host.emit(ACME, json!({"name": "forum.thread.created"}));
    assert_eq!(emitted.status, 201);
    host.wait_for("deliveries", ACME, |d| {
        d.len() == 1 && d[0]["state"] == "completed"
    });
    let everything = host.post("/v1/admin/replay", ADMIN, json!({}));
    assert_eq!(
        everything.status, 400,
        "replaying everything takes a filter: {everything:?}"
    );
    let replayed = host.post("/v1/admin/replay", ADMIN, json!({"tenant": "org_acme"}));
    assert_eq!(
        replayed.body,
        json!({"deliveries_created": 1}),
        "{replayed:?}"
    );
    host.wait_for("deliveries", ACME, |d| {
        d.len() == 2 && d.iter().all(|d| d["state"] == "completed")
    });
    let directives = host.list("directives", ACME);
    assert_eq!(
        directives.len(),
        1,
        "the replay's directive deduplicated: {directives:?}"
    );
    let retried = host.post("/v1/admin/retry", ADMIN, json!({"tenant": "org_acme"}));
    assert_eq!(
        retried.body,
        json!({"retried": 0}),
        "nothing was discarded: {retried:?}"
    );
    let canceled = host.post(
        "/v1/admin/cancel",
        ADMIN,
        json!({"directives": [directives[0]["id"]]}),
    );
    assert_eq!(
        canceled.body,
        json!({"deliveries_canceled": 0, "directives_canceled": 0}),
        "a succeeded directive is not canceled: {canceled:?}"
    );
    let nothing = host.post("/v1/admin/cancel", ADMIN, json!({}));
    assert_eq!(nothing.status, 400, "{nothing:?}");
    let misspelt = host.post("/v1/admin/retry", ADMIN, json!({"tenants": "org_acme"}));
    assert_eq!(misspelt.status, 400, "{misspelt:?}");
}

/// Waits until the server closes `stream` (a read returns end of file or a
/// reset), for at most [`PATIENCE`]; what it sent before, if anything.
fn closed_by_the_server(stream: &mut TcpStream) -> String {
    stream
        .set_read_timeout(Some(PATIENCE))
        .expect("read timeout");
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return String::from_utf8_lossy(&seen).into_owned(),
            Ok(n) => seen.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return String::from_utf8_lossy(&seen).into_owned();
            }
            Err(e) => panic!("still open after {PATIENCE:?} ({e}); it sent: {seen:?}"),
        }
    }
}

#[test]
fn slow_and_idle_clients_are_cut_off_while_a_normal_one_is_served() {
    let host = Host::start_with(
        "slow",
        "header_timeout_ms = 1000\nbody_timeout_ms = 1000\nmax_connections = 64",
    );
    // Twenty clients that dribble their headers, one line every 300 ms.
    let dribblers: Vec<std::thread::JoinHandle<String>> = (0..20)
        .map(|_| {
            let addr = host.addr.clone();
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(&addr).expect("connect");
                write!(stream, "GET /healthz HTTP/1.1\r\nHost: {addr}\r\n").expect("head");
                let reader = stream.try_clone().expect("clone");
                let writer = std::thread::spawn(move || {
                    let mut stream = reader;
                    for i in 0..200 {
                        std::thread::sleep(Duration::from_millis(300));
                        if write!(stream, "X-Slow-{i}: 1\r\n").is_err() {
                            return; // cut off
                        }
                    }
                });
                let seen = closed_by_the_server(&mut stream);
                let _ = writer.join();
                seen
            })
        })
        .collect();
    // An idle connection that never sends a byte.
    let mut idle = TcpStream::connect(&host.addr).expect("connect");
    // A request whose body stops halfway.
    let mut stalled = TcpStream::connect(&host.addr).expect("connect");
    write!(
        stalled,
        "POST /v1/signals HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {ACME}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\":",
        host.addr
    )
    .expect("write");

    // Served meanwhile.
    let health = host.call("GET", "/healthz", None, None);
    assert_eq!(health.status, 200, "{health:?}");

    assert_eq!(closed_by_the_server(&mut idle), "", "closed without a word");
    let answer = closed_by_the_server(&mut stalled);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive within 1000 ms"), "{answer}");
    for dribbler in dribblers {
        let seen = dribbler.join().expect("a dribbling client");
        assert!(
            !seen.contains("200 OK"),
            "never completed its headers: {seen}"
        );
    }
    // And still served afterwards.
    let health = host.call("GET", "/healthz", None, None);
    assert_eq!(health.status, 200, "{health:?}");
}

#[test]
fn connections_over_the_cap_wait_to_be_accepted() {
    let host = Host::start_with("cap", "max_connections = 2");
    let first = TcpStream::connect(&host.addr).expect("connect");
    let second = TcpStream::connect(&host.addr).expect("connect");
    // Both slots are taken by connections that send nothing (the header
    // timeout is the default 10 s): a third request waits in the backlog.
    let addr = host.addr.clone();
    let third = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(&addr).expect("connect");
        write!(
            stream,
            "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .expect("write");
        let started = Instant::now();
        let answer = closed_by_the_server(&mut stream);
        (answer, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(!third.is_finished(), "served beyond the cap");
    drop(first); // a slot frees up
    let (answer, _) = third.join().expect("the third client");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(second);
}

#[test]
fn a_tenant_over_its_emit_rate_gets_429_with_retry_after() {
    let host = Host::start("rate");
    let set = host.call(
        "PUT",
        "/v1/admin/tenants/org_acme/limits",
        Some(ADMIN),
        Some(Body::Json(json!({ "max_emit_per_s": 1 }))),
    );
    assert_eq!(set.status, 200, "{set:?}");
    assert_eq!(set.body["limits"]["max_emit_per_s"], 1);
    let refused_fields = host.call(
        "PUT",
        "/v1/admin/tenants/org_acme/limits",
        Some(ADMIN),
        Some(Body::Json(json!({ "max_emits": 1 }))),
    );
    assert_eq!(refused_fields.status, 400, "a misspelt limit is an error");

    let started = Instant::now();
    let answers: Vec<Answer> = (0..10)
        .map(|i| {
            host.emit(
                ACME,
                json!({ "name": "rate.tested", "payload": { "i": i } }),
            )
        })
        .collect();
    let elapsed = started.elapsed().as_secs_f64();
    let accepted = answers.iter().filter(|a| a.status == 201).count();
    let refused: Vec<&Answer> = answers.iter().filter(|a| a.status == 429).collect();
    assert_eq!(accepted + refused.len(), 10, "{answers:?}");
    // One signal a second, with one second's worth to start with.
    assert!(
        accepted >= 1 && accepted as f64 <= 1.0 + elapsed,
        "{accepted} accepted in {elapsed:.2} s"
    );
    assert!(!refused.is_empty(), "ten emits in {elapsed:.2} s");
    for answer in &refused {
        assert_eq!(answer.retry_after.as_deref(), Some("1"), "{answer:?}");
        assert!(
            answer
                .error()
                .contains("tenant org_acme emits at most 1 signals a second (per host)"),
            "{answer:?}"
        );
    }
    assert_eq!(
        host.list("signals", ACME).len(),
        accepted,
        "a refused emit stores nothing"
    );
    // Another tenant is not held back.
    assert_eq!(
        host.emit(BETA, json!({ "name": "rate.tested", "payload": {} }))
            .status,
        201
    );
    let status = host.get("/v1/admin/status", ADMIN);
    assert_eq!(status.status, 200, "{status:?}");
    assert_eq!(
        status.body["refusals"]["org_acme"]["rate_limited"],
        refused.len(),
        "{status:?}"
    );
}

#[test]
fn the_causation_depth_limit_holds_over_http_and_another_tenants_id_reads_as_unknown() {
    let host = Host::start("causation");
    let emit_caused_by = |token: &str, cause: Option<&str>| {
        let mut body = json!({"name": "chain.link"});
        if let Some(cause) = cause {
            body["causation_id"] = json!(cause);
        }
        host.emit(token, body)
    };
    // B's chain, from its root (depth 0) to depth 16, the default limit.
    let mut cause: Option<String> = None;
    for depth in 0..=16 {
        let answer = emit_caused_by(BETA, cause.as_deref());
        assert_eq!(answer.status, 201, "depth {depth}: {answer:?}");
        cause = Some(answer.body["signal"]["id"].as_str().expect("id").to_owned());
    }
    let deepest = cause.expect("the chain's last id");
    let too_deep = emit_caused_by(BETA, Some(&deepest));
    assert_eq!(too_deep.status, 422, "{too_deep:?}");
    assert!(
        too_deep.error().contains("17 causes deep") && too_deep.error().contains("limit of 16"),
        "{too_deep:?}"
    );
    let cli_too_deep = cli(
        &host.dir,
        &[
            "emit",
            "chain.link",
            "--tenant",
            "org_beta",
            "--causation-id",
            &deepest,
        ],
    );
    let stderr = String::from_utf8_lossy(&cli_too_deep.stderr);
    assert!(!cli_too_deep.status.success(), "{stderr}");
    assert!(stderr.contains(too_deep.error()), "{stderr}");
    assert_eq!(host.list("signals", BETA).len(), 17, "nothing stored");

    // A naming B's deepest id is answered as A naming an id nobody has: the
    // signal is stored at depth 0, so A's own chain from it goes 16 deep.
    let unknown = emit_caused_by(ACME, Some("00000000-0000-7000-8000-000000000000"));
    let borrowed = emit_caused_by(ACME, Some(&deepest));
    assert_eq!(
        (unknown.status, borrowed.status),
        (201, 201),
        "{borrowed:?}"
    );
    let keys = |answer: &Answer| {
        let mut keys: Vec<String> = answer.body["signal"]
            .as_object()
            .expect("a signal")
            .keys()
            .cloned()
            .collect();
        keys.sort();
        keys
    };
    assert_eq!(keys(&unknown), keys(&borrowed));
    let mut cause = borrowed.body["signal"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    for depth in 1..=16 {
        let answer = emit_caused_by(ACME, Some(&cause));
        assert_eq!(answer.status, 201, "A's depth {depth}: {answer:?}");
        cause = answer.body["signal"]["id"].as_str().expect("id").to_owned();
    }
    assert_eq!(emit_caused_by(ACME, Some(&cause)).status, 422);
}

/// A library host on `host`'s store with a `ghost` handler that the running
/// host does not have: deliveries it makes are claimed by the running host,
/// found to have no handler, and put aside for later, so they stay pending
/// where the test leaves them. (Its signals also reach `audit-trail`, which
/// the running host registered for every signal, and runs at once.)
fn ghost_host(host: &Host) -> Sighost {
    let ghosts = host.dir.join("ghosts");
    std::fs::create_dir_all(&ghosts).expect("ghosts dir");
    std::fs::copy(guest("trivial"), ghosts.join("ghost.wasm")).expect("copy guest");
    std::fs::write(
        ghosts.join("ghost.toml"),
        "subscriptions = ['ghost.*']\ndirectives = ['bench.noop']\n",
    )
    .expect("manifest");
    let library = Sighost::open(HostConfig::new(host.dir.join("data"))).expect("open the store");
    let errors = library.load_handlers_dir(&ghosts).expect("read ghosts");
    assert!(errors.is_empty(), "{errors:?}");
    library
}

/// One `ghost.called` signal of org_acme, with a delivery to the ghost and
/// one to the running host's `audit-trail`; returns once the running host
/// has completed the latter, so that only the ghost's is left pending.
fn emit_to_ghost(library: &Sighost, i: usize) {
    let emitted = library
        .emit(NewSignal {
            tenant: "org_acme".into(),
            name: "ghost.called".into(),
            payload: json!({ "i": i }),
            ..NewSignal::default()
        })
        .expect("emit");
    assert_eq!(
        emitted.deliveries, 2,
        "the ghost, and audit-trail from the registry"
    );
    let deadline = Instant::now() + PATIENCE;
    loop {
        let audited = library
            .store()
            .deliveries(&DeliveryFilter {
                signal_id: Some(emitted.signal.id.clone()),
                handler: Some("audit-trail".into()),
                state: Some(DeliveryState::Completed),
                ..DeliveryFilter::default()
            })
            .expect("deliveries");
        if !audited.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "audit-trail never ran {emitted:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_tenant_at_its_pending_quota_gets_429_and_the_cli_the_same_words() {
    let host = Host::start("quota");
    let library = ghost_host(&host);
    emit_to_ghost(&library, 0);
    let set = host.call(
        "PUT",
        "/v1/admin/tenants/org_acme/limits",
        Some(ADMIN),
        Some(Body::Json(json!({ "max_pending": 1 }))),
    );
    assert_eq!(set.status, 200, "{set:?}");
    // Limits are read at most once a second: wait until this host refuses.
    let deadline = Instant::now() + PATIENCE;
    let refused = loop {
        let answer = host.emit(ACME, json!({"name": "forum.thread.created"}));
        if answer.status == 429 {
            break answer;
        }
        assert_eq!(answer.status, 201, "{answer:?}");
        assert!(Instant::now() < deadline, "never refused: {answer:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        refused.error().contains("may have at most 1"),
        "{refused:?}"
    );
    assert_eq!(
        refused.retry_after, None,
        "a quota is not a rate: {refused:?}"
    );
    let beta = host.emit(BETA, json!({"name": "forum.thread.created"}));
    assert_eq!(
        beta.status, 201,
        "another tenant is not held back: {beta:?}"
    );

    let cli_emit = cli(
        &host.dir,
        &["emit", "forum.thread.created", "--tenant", "org_acme"],
    );
    let stderr = String::from_utf8_lossy(&cli_emit.stderr);
    assert!(!cli_emit.status.success(), "{stderr}");
    assert!(
        stderr.contains("deliveries waiting, and may have at most 1"),
        "{stderr}"
    );
}

#[test]
fn admin_retry_and_cancel_act_on_the_deliveries_they_name() {
    let host = Host::start("admin-acts");
    let library = ghost_host(&host);
    for i in 0..2 {
        emit_to_ghost(&library, i);
    }
    // Claimed as a worker would, at a time past any snooze: one discarded,
    // one put back for an hour.
    let later = Utc::now() + chrono::Duration::minutes(10);
    let mut claimed = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while claimed.len() < 2 {
        assert!(Instant::now() < deadline, "claimed only {claimed:?}");
        claimed.extend(
            library
                .store()
                .claim_deliveries(&Claim::new("w", 10, Duration::from_secs(60)), later)
                .expect("claim"),
        );
    }
    let (discarded, pending) = (claimed[0].delivery.id, claimed[1].delivery.id);
    let results = [
        result(&claimed[0], "w", Decision::Discard, later),
        result(
            &claimed[1],
            "w",
            Decision::Snooze {
                at: later + chrono::Duration::hours(1),
            },
            later,
        ),
    ];
    library
        .store()
        .finish_deliveries(&results, later)
        .expect("finish");
    let state = |id: i64| {
        library
            .store()
            .deliveries(&DeliveryFilter {
                ids: vec![id],
                ..DeliveryFilter::default()
            })
            .expect("deliveries")[0]
            .state
    };
    assert_eq!(state(discarded), DeliveryState::Discarded);

    let retried = host.post("/v1/admin/retry", ADMIN, json!({"ids": [discarded]}));
    assert_eq!(retried.body, json!({"retried": 1}), "{retried:?}");
    assert_ne!(state(discarded), DeliveryState::Discarded);
    let canceled = host.post("/v1/admin/cancel", ADMIN, json!({"deliveries": [pending]}));
    assert_eq!(
        canceled.body,
        json!({"deliveries_canceled": 1, "directives_canceled": 0}),
        "{canceled:?}"
    );
    assert_eq!(state(pending), DeliveryState::Canceled);
}

#[test]
fn emits_a_batch_in_one_transaction_and_refuses_it_whole_naming_each_bad_item() {
    let host = Host::start_with("batches", "max_batch_signals = 3");
    let stored = |host: &Host| host.list("signals", ACME).len();

    let batch = host.emit(
        ACME,
        json!([
            {"name": "forum.thread.created", "payload": {"n": 1}},
            {"name": "forum.thread.created", "payload": {"n": 2}, "dedupe_key": "k1"},
            {"name": "forum.thread.created", "payload": {"n": 3}, "dedupe_key": "k1"},
        ]),
    );
    assert_eq!(batch.status, 200, "{batch:?}");
    let results = batch.body["results"].as_array().expect("a result per item");
    let statuses: Vec<&str> = results
        .iter()
        .map(|r| r["status"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        statuses,
        ["created", "created", "existing"],
        "a dedupe key is honoured within the batch"
    );
    assert_eq!(results[2]["signal"]["id"], results[1]["signal"]["id"]);
    assert!(results.iter().all(|r| r["signal"]["tenant"] == "org_acme"));
    assert_eq!(results[0]["deliveries"], 1, "{results:?}");
    assert_eq!(stored(&host), 2);

    // Against the store too: the key is taken now.
    let again = host.emit(
        ACME,
        json!([{"name": "forum.thread.created", "payload": {"n": 4}, "dedupe_key": "k1"}]),
    );
    assert_eq!(again.body["results"][0]["status"], "existing", "{again:?}");

    let refused = host.emit(
        ACME,
        json!([
            {"name": "forum.thread.created", "payload": {"n": 5}},
            {"name": "Not A Name", "payload": {}},
            "not an object",
        ]),
    );
    assert_eq!(refused.status, 422, "{refused:?}");
    assert!(
        refused.error().contains("nothing was stored"),
        "{refused:?}"
    );
    let indexes: Vec<u64> = refused.body["errors"]
        .as_array()
        .expect("errors by index")
        .iter()
        .map(|e| e["index"].as_u64().expect("an index"))
        .collect();
    assert_eq!(indexes, [1, 2], "{refused:?}");
    assert_eq!(
        stored(&host),
        2,
        "the valid first item was not stored either"
    );

    let too_many = host.emit(
        ACME,
        json!([{"name": "a.b"}, {"name": "a.b"}, {"name": "a.b"}, {"name": "a.b"}]),
    );
    assert_eq!(too_many.status, 413, "{too_many:?}");
    assert!(
        too_many.error().contains("max_batch_signals"),
        "{too_many:?}"
    );
    let empty = host.emit(ACME, json!([]));
    assert_eq!(empty.status, 400, "{empty:?}");
    assert_eq!(stored(&host), 2);
}

#[test]
fn takes_cloudevents_in_batch_mode_and_in_binary_mode_from_the_sdk() {
    let host = Host::start("cloudevents-modes");
    let events = json!([
        {"specversion": "1.0", "id": "b1", "source": "/forum", "type": "forum.thread.created",
         "data": {"thread_id": "t1"}},
        {"specversion": "1.0", "id": "b2", "source": "/forum", "type": "forum.thread.created"},
    ]);
    let batch = host.call(
        "POST",
        "/v1/signals",
        Some(ACME),
        Some(Body::Raw(
            "application/cloudevents-batch+json",
            events.to_string(),
        )),
    );
    assert_eq!(batch.status, 200, "{batch:?}");
    let results = batch.body["results"].as_array().expect("results");
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["signal"]["dedupe_key"], "/forum b1");
    assert_eq!(results[0]["signal"]["payload"], json!({"thread_id": "t1"}));
    let not_a_list = host.call(
        "POST",
        "/v1/signals",
        Some(ACME),
        Some(Body::Raw(
            "application/cloudevents-batch+json",
            events[0].to_string(),
        )),
    );
    assert_eq!(not_a_list.status, 400, "{not_a_list:?}");

    // A batch's bytes (here 40 KiB, past one signal's 20 KiB bound) are for
    // a tenant's emit only: without its token the same body is refused
    // before it is read.
    let big: Vec<Value> = (0..250)
        .map(|i| {
            json!({"specversion": "1.0", "id": format!("big-{i}"), "source": "/bulk",
                   "type": "forum.thread.created", "data": {"pad": "x".repeat(100)}})
        })
        .collect();
    let big = Value::Array(big).to_string();
    assert!(big.len() > 30 << 10, "{}", big.len());
    let anonymous = host.call(
        "POST",
        "/v1/signals",
        None,
        Some(Body::Raw("application/cloudevents-batch+json", big.clone())),
    );
    assert_eq!(anonymous.status, 413, "{anonymous:?}");
    let tenant = host.call(
        "POST",
        "/v1/signals",
        Some(ACME),
        Some(Body::Raw("application/cloudevents-batch+json", big)),
    );
    assert_eq!(tenant.status, 200, "{tenant:?}");
    assert_eq!(tenant.body["results"].as_array().map(Vec::len), Some(250));

    // Binary mode, as the CloudEvents Python SDK encodes it (attributes in
    // percent-encoded ce-* headers, the data as the body).
    let send_with_the_sdk = || {
        let sent = Command::new(sighost_tests::test_python())
            .arg(sighost_tests::client_script("cloudevents_binary.py"))
            .arg(format!("{}/v1/signals", host.base))
            .arg(ACME)
            .output()
            .expect("run the Python client");
        assert!(
            sent.status.success(),
            "{}",
            String::from_utf8_lossy(&sent.stderr)
        );
        serde_json::from_slice::<Value>(&sent.stdout).expect("the client's JSON line")
    };
    let answer = send_with_the_sdk();
    assert_eq!(answer["status"], 201, "{answer}");
    let signal = &answer["body"]["signal"];
    assert_eq!(signal["tenant"], "org_acme");
    assert_eq!(signal["name"], "forum.thread.created");
    assert_eq!(
        signal["payload"],
        json!({"thread_id": "t_77", "title": "sent in binary mode"})
    );
    assert_eq!(
        signal["dedupe_key"], "/forum/board%207 binary-1",
        "the space the header decoded to is escaped in the key"
    );
    assert_eq!(signal["source"], "/forum/board 7");
    assert_eq!(signal["subject"], json!({"type": "thread", "id": "t_77"}));
    assert_eq!(signal["occurred_at"], "2026-12-07T12:00:00Z");
    assert_eq!(
        signal["metadata"]["traceparent"],
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "an extension attribute is kept"
    );
    // The same event again is the same signal.
    let again = send_with_the_sdk();
    assert_eq!(again["status"], 200, "{again}");
    assert_eq!(again["body"]["status"], "existing");
}

/// The samples of a `/metrics` answer: (name, labels, value) a line.
fn samples(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a value");
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (key, value) = pair.split_once('=').expect("key=value");
                    (key.to_owned(), value.trim_matches('"').to_owned())
                })
                .collect();
            (name.to_owned(), labels, value.parse().expect("a number"))
        })
        .collect()
}

/// The value of the one sample named `name` whose labels include `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = samples(text)
        .into_iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, value)| value)
        .collect();
    assert!(
        matching.len() <= 1,
        "{name} {labels:?} matches {matching:?}"
    );
    matching.first().copied()
}

#[test]
fn metrics_break_the_work_down_by_handler_directive_route_and_tenant() {
    // Tenant labels on; failed work pruned a second after it is discarded.
    let host = Host::start_with_guests(
        "metrics",
        "[metrics]\ntenant_labels = true\n\
         [retention]\ninterval = \"1s\"\ndiscarded = \"1s\"\n",
        &[("permanent-failure", "job.failed")],
    );
    // The failing first: retention never prunes the newest delivery.
    let mut failing = Vec::new();
    for i in 0..2 {
        let created = host.emit(BETA, json!({"name": "job.failed", "payload": {"i": i}}));
        assert_eq!(created.status, 201, "{created:?}");
        failing.push(
            created.body["signal"]["id"]
                .as_str()
                .expect("an id")
                .to_owned(),
        );
    }
    for i in 0..3 {
        let created = host.emit(
            ACME,
            json!({"name": "forum.thread.created", "payload": {"thread_id": format!("t{i}")}}),
        );
        assert_eq!(created.status, 201, "{created:?}");
    }
    let one = host.get(&format!("/v1/signals/{}", failing[0]), BETA);
    assert_eq!(one.status, 200, "{one:?}");
    host.wait_for("directives", ACME, |d| {
        d.len() == 3 && d.iter().all(|d| d["state"] == "succeeded")
    });
    // The discarded deliveries are counted, then pruned.
    let deadline = Instant::now() + PATIENCE;
    let text = loop {
        let answer = host.call("GET", "/metrics", None, None);
        assert_eq!(answer.status, 200, "{answer:?}");
        let text = answer.body.as_str().expect("text").to_owned();
        let pruned = sample(
            &text,
            "sighost_pruned_rows_total",
            &[("kind", "deliveries.discarded")],
        );
        if pruned == Some(2.0) {
            break text;
        }
        assert!(Instant::now() < deadline, "nothing pruned: {text}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(text.ends_with("# EOF\n"), "{text}");

    let acme_audit = [("handler", "audit-trail"), ("tenant", "org_acme")];
    // Attempts by how the run ended, and what the store made of each
    // delivery after its attempt (audit-trail takes org_beta's signals too).
    let (ran, ended) = ("attempts", "deliveries_finished");
    let acme = ("audit-trail", "org_acme");
    let (beta, beta_audit) = (
        ("permanent-failure", "org_beta"),
        ("audit-trail", "org_beta"),
    );
    for (family, (handler, tenant), label, expected) in [
        (ran, acme, ("outcome", "ok"), Some(3.0)),
        (ran, beta_audit, ("outcome", "ok"), Some(2.0)),
        (ran, beta, ("outcome", "permanent"), Some(2.0)),
        (ran, acme, ("outcome", "transient"), None),
        (ended, acme, ("result", "completed"), Some(3.0)),
        (ended, beta, ("result", "discarded"), Some(2.0)),
        (ended, acme, ("result", "retrying"), None),
    ] {
        let labels = [("handler", handler), ("tenant", tenant), label];
        let found = sample(&text, &format!("sighost_{family}_total"), &labels);
        assert_eq!(found, expected, "{family} {labels:?}: {text}");
    }
    // Each histogram counts every attempt, its buckets end at the count,
    // and what it measured is there.
    for family in [
        "sighost_attempt_duration_seconds",
        "sighost_attempt_peak_memory_bytes",
    ] {
        let count = sample(&text, &format!("{family}_count"), &acme_audit);
        assert_eq!(count, Some(3.0), "{family}: {text}");
        let all = [acme_audit[0], acme_audit[1], ("le", "+Inf")];
        assert_eq!(sample(&text, &format!("{family}_bucket"), &all), Some(3.0));
        let sum = sample(&text, &format!("{family}_sum"), &acme_audit).expect("a sum");
        assert!(sum > 0.0, "{family}_sum {sum}");
    }
    let executions = sample(
        &text,
        "sighost_directive_execution_duration_seconds_count",
        &[
            ("name", "audit.record"),
            ("executor", "log"),
            ("outcome", "succeeded"),
            ("tenant", "org_acme"),
        ],
    );
    assert_eq!(executions, Some(3.0), "{text}");
    // Requests by route pattern, never by path (a path holds an id).
    let requests = |method: &str, route: &str, code: &str| {
        sample(
            &text,
            "sighost_http_request_duration_seconds_count",
            &[("method", method), ("route", route), ("code", code)],
        )
    };
    assert_eq!(requests("POST", "/v1/signals", "201"), Some(5.0));
    assert_eq!(requests("GET", "/v1/signals/{id}", "200"), Some(1.0));
    assert!(!text.contains(&failing[0]), "{text}");
    assert_eq!(
        sample(
            &text,
            "sighost_http_signals_total",
            &[("status", "created")]
        ),
        Some(5.0)
    );
    // The queue: nothing waits, nothing was rescued.
    assert_eq!(
        sample(
            &text,
            "sighost_queue_lag_seconds",
            &[("handler", "audit-trail")]
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &text,
            "sighost_leases_rescued_total",
            &[("queue", "deliveries")]
        ),
        Some(0.0)
    );
    // audit-trail takes every signal: org_beta's two as well.
    assert_eq!(
        sample(&text, "sighost_deliveries", &[("state", "completed")]),
        Some(5.0)
    );
}
