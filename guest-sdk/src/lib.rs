//! Write [sighost](https://example.invalid/sighost) signal handlers in Rust.
//!
//! A handler is a function that receives one signal and may ask the host for
//! directives: auditable intents that the host carries out after the delivery
//! completes. Compile the crate to `wasm32-wasip2` as a `cdylib` and drop the
//! `.wasm` into the host's handlers directory.
//!
//! ```
//! use sighost_sdk::{Context, HandlerError, Signal, directive, handler};
//!
//! #[derive(serde::Deserialize)]
//! struct ThreadCreated { thread_id: String }
//!
//! #[handler]
//! fn handle_signal(signal: Signal, _tenant: String, context: Context) -> Result<(), HandlerError> {
//!     if !context.has_package("forum") {
//!         return Ok(()); // not applicable to this tenant
//!     }
//!     let thread: ThreadCreated = signal.payload()?;
//!     directive("forum.thread.summarize")
//!         .payload(&serde_json::json!({ "thread_id": thread.thread_id }))
//!         .request(&signal)?;
//!     Ok(())
//! }
//!
//! // The same function runs natively under the test harness, no wasm involved.
//! let harness = sighost_sdk::testing::Harness::new("forum-summarizer", "org_acme")
//!     .packages(["forum"]);
//! let signal = harness.signal("forum.thread.created", serde_json::json!({ "thread_id": "t1" }));
//! let run = harness.run_tenant_handler(signal, handle_signal);
//! assert!(run.result.is_ok());
//! assert_eq!(run.directives[0].name, "forum.thread.summarize");
//! ```
//!
//! # Shapes
//!
//! [`handler`] picks the export from the function's parameters:
//! `(Signal, String, Context)` — signal, tenant, context; the recommended shape —
//! `(Signal, Context)`, or `(Signal)`, which cannot see the tenant's settings and
//! packages and is discouraged.
//!
//! # Idempotency keys
//!
//! Unless a directive sets one, its key is derived by [`default_idempotency_key`]:
//! the lowercase hex SHA-256 of the tenant, the signal id, the handler name (the
//! handler crate's package name) and the directive name, joined by NUL bytes. A
//! retried or replayed delivery therefore requests the same key, and the host
//! records the directive once. A handler that requests the same directive name
//! twice for one signal must give each request its own key, or the second is a
//! conflict (with a different payload) or a duplicate (with the same one).
//!
//! # Layout
//!
//! - `types`: [`Signal`], [`Context`], [`EntityRef`], [`HandlerError`].
//! - `directive`: the [`directive`] builder, [`Receipt`] and [`DirectiveError`].
//! - [`testing`]: the native harness that captures requested directives.
//! - `guest` (wasm only): the bindings of `wit/sighost.wit` and the glue the
//!   [`handler`] attribute calls.

mod directive;
#[cfg(target_family = "wasm")]
mod guest;
pub mod testing;
mod types;

pub use directive::{
    Directive, DirectiveError, Receipt, ReceiptStatus, default_idempotency_key, directive,
};
pub use sighost_sdk_macros::handler;
pub use types::{Context, EntityRef, HandlerError, Signal};

/// What the [`handler`] attribute expands to. Not a public API.
#[doc(hidden)]
pub mod __private {
    #[cfg(target_family = "wasm")]
    pub use crate::guest::{bindings, run_context_handler, run_signal_handler, run_tenant_handler};
    #[cfg(target_family = "wasm")]
    pub use wit_bindgen;
}
