//! The wasm side: bindings of the `imports` world, shared by every handler
//! world through `with`, and the glue between them and the SDK's own types.

use crate::directive::Request;
use crate::{Context, DirectiveError, EntityRef, HandlerError, Receipt, ReceiptStatus, Signal};

#[allow(unsafe_code, clippy::all)]
mod generated {
    wit_bindgen::generate!({
        path: "../wit",
        world: "sighost:handler/imports",
    });
}

/// The generated interfaces, re-exported for the `#[handler]` expansion.
pub mod bindings {
    pub use super::generated::sighost::handler::{directives, types};
}

use bindings::types as wit;

pub(crate) fn request_directive(request: Request) -> Result<Receipt, DirectiveError> {
    let request = wit::DirectiveRequest {
        name: request.name,
        payload: request.payload,
        idempotency_key: request.idempotency_key,
        scheduled_at: request.scheduled_at,
    };
    match bindings::directives::request_directive(&request) {
        Ok(receipt) => Ok(Receipt {
            directive_id: receipt.directive_id,
            status: match receipt.status {
                wit::ReceiptStatus::Accepted => ReceiptStatus::Accepted,
                wit::ReceiptStatus::Duplicate => ReceiptStatus::Duplicate,
            },
        }),
        Err(error) => Err(match error {
            wit::DirectiveError::NotPermitted(m) => DirectiveError::NotPermitted(m),
            wit::DirectiveError::Invalid(m) => DirectiveError::Invalid(m),
            wit::DirectiveError::TooLarge(m) => DirectiveError::TooLarge(m),
            wit::DirectiveError::SecretDetected(m) => DirectiveError::SecretDetected(m),
            wit::DirectiveError::LimitExceeded(m) => DirectiveError::LimitExceeded(m),
            wit::DirectiveError::Conflict(m) => DirectiveError::Conflict(m),
        }),
    }
}

pub fn run_tenant_handler(
    handler_name: &'static str,
    signal: wit::Signal,
    tenant: String,
    context: wit::Context,
    handler: fn(Signal, String, Context) -> Result<(), HandlerError>,
) -> Result<(), wit::HandlerError> {
    crate::testing::set_handler_name(handler_name);
    handler(signal.into(), tenant, context.into()).map_err(Into::into)
}

pub fn run_context_handler(
    handler_name: &'static str,
    signal: wit::Signal,
    context: wit::Context,
    handler: fn(Signal, Context) -> Result<(), HandlerError>,
) -> Result<(), wit::HandlerError> {
    crate::testing::set_handler_name(handler_name);
    handler(signal.into(), context.into()).map_err(Into::into)
}

pub fn run_signal_handler(
    handler_name: &'static str,
    signal: wit::Signal,
    handler: fn(Signal) -> Result<(), HandlerError>,
) -> Result<(), wit::HandlerError> {
    crate::testing::set_handler_name(handler_name);
    handler(signal.into()).map_err(Into::into)
}

impl From<wit::EntityRef> for EntityRef {
    fn from(e: wit::EntityRef) -> Self {
        EntityRef {
            kind: e.type_,
            id: e.id,
        }
    }
}

impl From<wit::Signal> for Signal {
    fn from(s: wit::Signal) -> Self {
        Signal {
            id: s.id,
            tenant: s.tenant,
            name: s.name,
            payload: s.payload,
            metadata: s.metadata,
            dedupe_key: s.dedupe_key,
            occurred_at: s.occurred_at,
            correlation_id: s.correlation_id,
            causation_id: s.causation_id,
            actor: s.actor.map(Into::into),
            subject: s.subject.map(Into::into),
            source: s.source,
            inserted_at: s.inserted_at,
        }
    }
}

impl From<wit::Context> for Context {
    fn from(c: wit::Context) -> Self {
        Context {
            tenant: c.tenant,
            signal_id: c.signal_id,
            signal_name: c.signal_name,
            correlation_id: c.correlation_id,
            causation_id: c.causation_id,
            attempt: c.attempt,
            max_attempts: c.max_attempts,
            options: c.options,
            settings: c.settings,
            packages: c.packages,
        }
    }
}

impl From<HandlerError> for wit::HandlerError {
    fn from(e: HandlerError) -> Self {
        match e {
            HandlerError::Transient(m) => wit::HandlerError::Transient(m),
            HandlerError::Permanent(m) => wit::HandlerError::Permanent(m),
        }
    }
}
