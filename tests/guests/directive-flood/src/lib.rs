//! Requests 1000 distinct `flood.item` directives and succeeds whatever the
//! host refuses: the per-invocation directive limit must refuse, not fail.

use sighost_sdk::{Context, HandlerError, Signal, directive, handler};

#[handler]
fn handle_signal(signal: Signal, _tenant: String, _context: Context) -> Result<(), HandlerError> {
    let (mut accepted, mut refused) = (0u32, 0u32);
    for i in 0..1000u32 {
        match directive("flood.item")
            .payload(&serde_json::json!({ "i": i }))
            .idempotency_key(format!("item-{i}"))
            .request(&signal)
        {
            Ok(_) => accepted += 1,
            Err(_) => refused += 1,
        }
    }
    std::hint::black_box((accepted, refused));
    Ok(())
}
