//! The `#[handler]` attribute re-exported by `sighost-sdk`.
//!
//! The attribute reads the arity of the function it decorates to pick one of the
//! three handler worlds of `wit/sighost.wit`, and generates that world's export
//! bindings *in the handler's crate*. The bindings must live there, not in the
//! SDK: each set of bindings embeds a custom section describing its world, and a
//! component whose core module carried the sections of all three worlds would
//! have to export three conflicting `handle-signal` functions.

use proc_macro::TokenStream;
use quote::quote;
use syn::{ItemFn, parse_macro_input};

/// The one WIT package, embedded when this crate is compiled so that handler
/// crates need no path to it.
const WIT: &str = include_str!("../../../wit/sighost.wit");

/// Exports a function as the crate's signal handler.
///
/// The function's parameters choose the shape:
/// `(Signal, String, Context)` (signal, tenant, context), `(Signal, Context)` or
/// `(Signal)`. It returns `Result<(), HandlerError>`.
#[proc_macro_attribute]
pub fn handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return syn::Error::new(
            proc_macro2::Span::call_site(),
            "#[handler] takes no arguments",
        )
        .to_compile_error()
        .into();
    }
    let function = parse_macro_input!(item as ItemFn);
    let name = &function.sig.ident;
    let (world, glue) = match function.sig.inputs.len() {
        3 => (
            "tenant-handler",
            quote! {
                fn handle_signal(signal: Signal, tenant: String, context: Context) -> Result<(), HandlerError> {
                    sdk::__private::run_tenant_handler(HANDLER_NAME, signal, tenant, context, super::#name)
                }
            },
        ),
        2 => (
            "context-handler",
            quote! {
                fn handle_signal(signal: Signal, context: Context) -> Result<(), HandlerError> {
                    sdk::__private::run_context_handler(HANDLER_NAME, signal, context, super::#name)
                }
            },
        ),
        1 => (
            "signal-handler",
            quote! {
                fn handle_signal(signal: Signal) -> Result<(), HandlerError> {
                    sdk::__private::run_signal_handler(HANDLER_NAME, signal, super::#name)
                }
            },
        ),
        n => {
            return syn::Error::new_spanned(
                &function.sig,
                format!(
                    "a handler takes (signal, tenant, context), (signal, context) or (signal); \
                     this one takes {n} parameters"
                ),
            )
            .to_compile_error()
            .into();
        }
    };
    let world = format!("sighost:handler/{world}");
    quote! {
        #function

        #[cfg(target_family = "wasm")]
        #[doc(hidden)]
        #[allow(unsafe_code, clippy::all)]
        mod __sighost_export {
            use ::sighost_sdk as sdk;

            /// The name the default idempotency keys are derived from.
            const HANDLER_NAME: &str = env!("CARGO_PKG_NAME");

            sdk::__private::wit_bindgen::generate!({
                inline: #WIT,
                world: #world,
                runtime_path: "::sighost_sdk::__private::wit_bindgen::rt",
                with: {
                    "sighost:handler/types@0.1.0": ::sighost_sdk::__private::bindings::types,
                    "sighost:handler/directives@0.1.0": ::sighost_sdk::__private::bindings::directives,
                },
            });

            struct Glue;

            impl Guest for Glue {
                #glue
            }

            export!(Glue);
        }
    }
    .into()
}
