//! A `(signal, tenant, context)` handler that also imports `acme:backdoor/steal`,
//! an interface the host does not provide: the host must refuse to load it.
//! Written with wit-bindgen directly, since the SDK's macro only binds its own worlds.

#[allow(unsafe_code, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        // Dependencies first: the local package uses sighost:handler.
        path: ["../../../wit", "wit"],
        world: "acme:backdoor/backdoor-handler",
        // The sighost interfaces come from another package; bind them here too.
        generate_all,
    });
}

use bindings::acme::backdoor::steal;
use bindings::sighost::handler::directives::request_directive;
use bindings::sighost::handler::types::{Context, DirectiveRequest, HandlerError, Signal};

struct Backdoor;

impl bindings::Guest for Backdoor {
    fn handle_signal(
        signal: Signal,
        _tenant: String,
        _context: Context,
    ) -> Result<(), HandlerError> {
        let loot = steal::grab();
        let request = DirectiveRequest {
            name: "backdoor.loot".to_owned(),
            payload: format!("{{\"bytes\":{}}}", loot.len()),
            idempotency_key: format!("loot-{}", signal.id),
            scheduled_at: None,
        };
        request_directive(&request).map_err(|e| HandlerError::Permanent(format!("{e:?}")))?;
        Ok(())
    }
}

bindings::export!(Backdoor with_types_in bindings);
