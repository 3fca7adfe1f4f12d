//! sighost runs tenant-scoped signal handlers compiled to WebAssembly
//! components, each delivery in a fresh sandbox whose only way out is
//! `request-directive`. See `DESIGN.md` in the project for the contract.
//!
//! # Layout
//!
//! - [`sandbox`]: the wasmtime engine, handler loading (import allow-list,
//!   shape detection, manifest), `request-directive` and [`Sandbox::invoke`].
//!   - `sandbox/loader.rs`: what is decided once per module.
//!   - `sandbox/directives.rs`: the checks every directive request passes.
//!   - `sandbox/output.rs`: bounded, redacted capture of guest stdout/stderr.
//! - [`signal`]: the stored form of a signal, name rules, subscription patterns.
//! - [`limits`]: every limit, with the host's defaults and manifest overrides.
//! - [`secrets`]: finding credentials in payloads and redacting them in logs.
//! - [`reload`]: the handlers directory, watched: changed modules are
//!   compiled off the delivery path and swapped in.
//! - [`config`]: the TOML configuration file and what it turns into.
//! - [`http`]: the HTTP API (signals in, the caller's records out, operator
//!   endpoints, metrics and health), served by `sighost run`.
//!
//! # Errors
//!
//! Library functions return typed errors ([`LoadError`], [`SandboxError`]);
//! what a guest does is never an error of the host: it is an [`Outcome`].

pub mod config;
pub mod emit;
mod host;
pub mod http;
pub mod limits;
mod priority;
pub mod registry;
pub mod reload;
pub mod retry;
pub mod runner;
pub mod sandbox;
pub mod secrets;
pub mod signal;
pub mod store;
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
