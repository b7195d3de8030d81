//! What Stripe's objects (a PaymentIntent, a Refund) say about payd's
//! calls: the outcome of a charge, capture, void or refund.

use serde_json::{Value, json};

use super::api::decline;
use crate::domain::FailureCode;
use crate::provider::{Inquiry, Operation, ProviderOutcome};

fn text<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object.get(field).and_then(Value::as_str)
}

/// The object's `id`.
pub fn id(object: &Value) -> String {
    text(object, "id").unwrap_or_default().to_owned()
}

/// What the customer must do, as payd shows it (contract §12): Stripe's
/// redirect when it gives one, else the client secret for Stripe.js.
pub fn next_action(intent: &Value) -> Value {
    let action = intent.get("next_action");
    let url = action
        .filter(|a| text(a, "type") == Some("redirect_to_url"))
        .and_then(|a| a.get("redirect_to_url"))
        .and_then(|r| text(r, "url"));
    match url {
        Some(url) => json!({"type": "redirect_to_url", "url": url}),
        None => json!({"type": "use_stripe_sdk", "client_secret": text(intent, "client_secret")}),
    }
}

/// A decline as payd records it, and Stripe's own code for it.
pub fn declined(code: FailureCode, message: impl Into<String>) -> ProviderOutcome {
    ProviderOutcome::Failed { code, message: message.into() }
}

/// The PaymentIntent's last error: payd's code, Stripe's code, the message.
pub fn last_error(intent: &Value) -> (FailureCode, Option<String>, String) {
    let error = intent.get("last_payment_error");
    let field = |name: &str| error.and_then(|e| text(e, name)).map(str::to_owned);
    let provider_code = field("decline_code").or_else(|| field("code"));
    let message = field("message").unwrap_or_else(|| "The card was declined.".to_owned());
    (decline(provider_code.as_deref()), provider_code, message)
}

/// What a PaymentIntent's state says of a charge (`operation` purchase or
/// authorization). `None` while it waits for payd's confirmation.
pub fn charge_outcome(intent: &Value) -> Option<ProviderOutcome> {
    let reference = id(intent);
    Some(match text(intent, "status").unwrap_or_default() {
        "succeeded" | "requires_capture" => ProviderOutcome::Succeeded { reference },
        "requires_action" => ProviderOutcome::RequiresAction { reference, next_action: next_action(intent) },
        "processing" => ProviderOutcome::Pending { reference },
        "requires_confirmation" => return None,
        "requires_payment_method" => {
            let (code, _, message) = last_error(intent);
            declined(code, message)
        }
        "canceled" => declined(FailureCode::Canceled, "The PaymentIntent was canceled at Stripe."),
        other => ProviderOutcome::unknown(FailureCode::ProcessingError, format!("PaymentIntent status {other:?}")),
    })
}

/// What a PaymentIntent says of a capture, void or charge payd asked for,
/// when payd asks after an unknown outcome.
pub fn inquiry(operation: Operation, intent: &Value) -> Inquiry {
    let status = text(intent, "status").unwrap_or_default();
    let reference = id(intent);
    match (operation, status) {
        (Operation::Purchase | Operation::Authorize, _) => match charge_outcome(intent) {
            Some(outcome) => Inquiry::Answered(outcome),
            None => Inquiry::NotReceived,
        },
        (Operation::Capture, "succeeded") | (Operation::Void, "canceled") => {
            Inquiry::Answered(ProviderOutcome::Succeeded { reference })
        }
        // Still authorized: the capture or cancel never arrived.
        (Operation::Capture | Operation::Void, "requires_capture") => Inquiry::NotReceived,
        (Operation::Capture, "canceled") => Inquiry::Answered(declined(
            FailureCode::ProviderError,
            "The authorization was canceled at Stripe before the capture.",
        )),
        (Operation::Void, "succeeded") => Inquiry::Answered(declined(
            FailureCode::ProviderError,
            "The PaymentIntent was captured at Stripe; it cannot be canceled.",
        )),
        _ => Inquiry::Unknown(format!("PaymentIntent status {status:?} does not answer a {}", operation.as_str())),
    }
}

/// What a capture or cancel answered with a PaymentIntent says.
pub fn after(operation: Operation, intent: &Value) -> ProviderOutcome {
    match inquiry(operation, intent) {
        Inquiry::Answered(outcome) => outcome,
        Inquiry::NotReceived | Inquiry::Unknown(_) => ProviderOutcome::unknown(
            FailureCode::ProcessingError,
            format!("PaymentIntent status {:?} after a {}", text(intent, "status"), operation.as_str()),
        ),
    }
}

/// What a Refund object says.
pub fn refund_outcome(refund: &Value) -> ProviderOutcome {
    let reference = id(refund);
    match text(refund, "status").unwrap_or_default() {
        "succeeded" => ProviderOutcome::Succeeded { reference },
        "pending" | "requires_action" => ProviderOutcome::Pending { reference },
        status => {
            let reason = text(refund, "failure_reason").unwrap_or(status);
            declined(FailureCode::ProviderError, format!("Stripe refused the refund ({reason})."))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intents_map_to_outcomes() {
        let pi = |status: &str| json!({"id": "pi_1", "status": status, "client_secret": "pi_1_secret"});
        assert_eq!(charge_outcome(&pi("succeeded")), Some(ProviderOutcome::Succeeded { reference: "pi_1".into() }));
        assert_eq!(
            charge_outcome(&pi("requires_capture")),
            Some(ProviderOutcome::Succeeded { reference: "pi_1".into() })
        );
        assert_eq!(charge_outcome(&pi("requires_confirmation")), None);
        assert_eq!(inquiry(Operation::Purchase, &pi("requires_confirmation")), Inquiry::NotReceived);
        match charge_outcome(&pi("requires_action")) {
            Some(ProviderOutcome::RequiresAction { next_action, .. }) => {
                assert_eq!(next_action, json!({"type": "use_stripe_sdk", "client_secret": "pi_1_secret"}));
            }
            other => panic!("{other:?}"),
        }
        let redirect = json!({"id": "pi_1", "status": "requires_action",
            "next_action": {"type": "redirect_to_url", "redirect_to_url": {"url": "https://hooks.stripe.com/3ds"}}});
        assert_eq!(next_action(&redirect), json!({"type": "redirect_to_url", "url": "https://hooks.stripe.com/3ds"}));
        let failed = json!({"id": "pi_1", "status": "requires_payment_method",
            "last_payment_error": {"code": "card_declined", "decline_code": "insufficient_funds", "message": "no"}});
        assert_eq!(
            last_error(&failed),
            (FailureCode::InsufficientFunds, Some("insufficient_funds".into()), "no".into())
        );
        assert!(matches!(
            charge_outcome(&failed),
            Some(ProviderOutcome::Failed { code: FailureCode::InsufficientFunds, .. })
        ));
    }

    #[test]
    fn inquiries_tell_what_never_arrived() {
        let pi = |status: &str| json!({"id": "pi_1", "status": status});
        assert_eq!(inquiry(Operation::Capture, &pi("requires_capture")), Inquiry::NotReceived);
        assert_eq!(inquiry(Operation::Void, &pi("requires_capture")), Inquiry::NotReceived);
        assert!(matches!(
            inquiry(Operation::Capture, &pi("succeeded")),
            Inquiry::Answered(ProviderOutcome::Succeeded { .. })
        ));
        assert!(matches!(
            inquiry(Operation::Void, &pi("canceled")),
            Inquiry::Answered(ProviderOutcome::Succeeded { .. })
        ));
        assert!(matches!(
            inquiry(Operation::Void, &pi("succeeded")),
            Inquiry::Answered(ProviderOutcome::Failed { .. })
        ));
        assert!(matches!(after(Operation::Capture, &pi("requires_capture")), ProviderOutcome::Unknown { .. }));
        let re = |status: &str| json!({"id": "re_1", "status": status});
        assert_eq!(refund_outcome(&re("succeeded")), ProviderOutcome::Succeeded { reference: "re_1".into() });
        assert_eq!(refund_outcome(&re("pending")), ProviderOutcome::Pending { reference: "re_1".into() });
        assert!(matches!(refund_outcome(&re("failed")), ProviderOutcome::Failed { .. }));
    }
}
