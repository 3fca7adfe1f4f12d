//! Host bindings of `wit/sighost.wit`, generated from the `imports` world: the
//! WIT types and the `directives` host trait. The handler export is looked up
//! per shape in `loader.rs`, so one set of bindings serves all three worlds.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "sighost:handler/imports",
    anyhow: true,
});

pub use self::sighost::handler::directives;
pub use self::sighost::handler::types;
