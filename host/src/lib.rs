//! sighost runs tenant-scoped signal handlers compiled to WebAssembly
//! components, each delivery in a fresh sandbox whose only way out is
//! `request-directive`. `ARCHITECTURE.md` in the repository has the data
//! flow and the rules the code cites by section.
//!
//! # Layout
//!
//! - [`Sighost`] (`host.rs`): the library entry point; owns the store, the
//!   sandbox, the registry and the emitter, and starts workers and runner.
//! - [`operations`]: operator actions as library methods — tenants, retry,
//!   cancel — with one validation, the host's clock, and confirmation for
//!   bulk actions; the CLI and the HTTP API both call them.
//! - [`emit`]: checks a new signal and writes it with its deliveries.
//! - [`fair`]: fair share between tenants: the claim's plan (start-time fair
//!   queueing by measured worker time), decided once over each store's
//!   verbs.
//! - [`rules`]: the delivery rules, decided once and pure (signal
//!   construction, deliverable targets, causation depth, directive
//!   duplicates and conflicts, lost leases, what operators may touch).
//! - [`registry`]: the handlers this process runs, by name, and the targets
//!   of an emit: those plus what the hosts registered in the store.
//! - [`sandbox`]: the wasmtime engine, handler loading (import allow-list,
//!   shape detection, manifest, load budget), `request-directive` and
//!   [`Sandbox::invoke`].
//!   - `sandbox/loader.rs`: what is decided once per module.
//!   - `sandbox/directives.rs`: the checks every directive request passes.
//!   - `sandbox/output.rs`: bounded, redacted capture of guest stdout/stderr.
//!   - `sandbox/pool.rs`: the instance pool's per-component limits, and
//!     refusals that name the setting to raise.
//! - [`worker`]: delivery workers (fetcher, dispatcher, completer); an
//!   invocation is a task holding one of a bounded number of slots, shared
//!   fairly between tenants (`worker/slots.rs`), and runs when the CPU gate
//!   gives it a thread, the tenant furthest behind first (`worker/gate.rs`).
//! - [`retry`]: when a failed attempt runs again.
//! - [`health`]: whether the store takes writes; result writes retried until
//!   they land, bounded at shutdown.
//! - [`heartbeat`]: leases kept alive by the process that holds them, so a
//!   dead process's work is rescued within seconds.
//! - [`runner`]: the directive runner and its executors (log, command,
//!   webhook, in-process).
//! - [`store`]: the store contract, implemented once ([`store::SqlStore`])
//!   over the SQLite and PostgreSQL dialects, each with its statements in
//!   `queries.rs`; SQL both share in `store/sql.rs`.
//! - [`signal`]: the stored form of a signal, name rules, subscription patterns.
//! - [`limits`]: every limit, with the host's defaults and manifest overrides.
//! - [`tenant_limits`]: the caps an operator sets on a tenant's emits (rate
//!   per host, pending quota), checked before anything is stored.
//! - [`secrets`]: finding credentials in payloads and redacting them in logs.
//! - [`reload`]: the handlers directory, watched: changed modules are
//!   compiled off the delivery path, side by side and at a lower CPU
//!   priority (`priority.rs`), and swapped in.
//! - [`config`]: the TOML configuration file and what it turns into.
//! - [`http`]: the HTTP API (signals in, the caller's records out, operator
//!   endpoints, metrics and health), served by `sighost run`.
//! - [`wake`], `threads.rs`: wake-ups between threads, and thread groups
//!   that stop together.
//!
//! # Errors
//!
//! Library functions return typed errors ([`LoadError`], [`SandboxError`],
//! [`HostError`]); what a guest does is never an error of the host: it is an
//! [`Outcome`].

pub mod config;
pub mod emit;
pub mod fair;
pub mod health;
pub mod heartbeat;
mod host;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod operations;
mod priority;
pub mod registry;
pub mod reload;
pub mod retention;
pub mod retry;
pub mod rules;
pub mod runner;
pub mod sandbox;
pub mod secrets;
pub mod signal;
pub mod store;
pub mod tenant_limits;
mod threads;
pub mod wake;
pub mod worker;

pub use config::{Config, ConfigError};
pub use host::{HostConfig, HostError, Running, Sighost};
pub use limits::Limits;
pub use sandbox::{
    DeliveryContext, Handler, Invocation, LoadError, Manifest, Outcome, RequestedDirective,
    Sandbox, SandboxConfig, SandboxError, Shape,
};
pub use signal::Signal;
