//! Echoes `echo.*` signals back as an `echo.reply` directive: the one-parameter
//! `(signal)` shape, which sees no context and is discouraged for real handlers.

use sighost_sdk::{HandlerError, Signal, directive, handler};

#[handler]
pub fn handle_signal(signal: Signal) -> Result<(), HandlerError> {
    let payload: serde_json::Value = signal.payload()?;
    directive("echo.reply")
        .payload(&serde_json::json!({ "echo": payload, "of": signal.name }))
        .request(&signal)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sighost_sdk::testing::Harness;

    #[test]
    fn echoes_the_payload() {
        let harness = Harness::new(env!("CARGO_PKG_NAME"), "org_acme");
        let signal = harness.signal("echo.ping", serde_json::json!({ "n": 1 }));
        let run = harness.run_signal_handler(signal, handle_signal);
        assert_eq!(run.result, Ok(()));
        assert_eq!(run.directives[0].payload["echo"]["n"], 1);
    }
}
