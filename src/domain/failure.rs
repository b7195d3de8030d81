//! Why a provider call failed, and whether that is worth retrying.

use serde::{Deserialize, Serialize};

/// Why a provider call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureCode {
    /// Hard decline.
    CardDeclined,
    /// Hard decline.
    InsufficientFunds,
    /// Hard decline.
    ExpiredCard,
    /// Transient: the provider had a problem; retry.
    ProcessingError,
    /// Transient: no answer in time; the outcome is unknown, so a retry must
    /// reuse the same provider idempotency key.
    Timeout,
    /// Transient: could not reach the provider.
    ProviderUnavailable,
}

impl FailureCode {
    /// The wire spelling, used as the payment's `error_code`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CardDeclined => "card_declined",
            Self::InsufficientFunds => "insufficient_funds",
            Self::ExpiredCard => "expired_card",
            Self::ProcessingError => "processing_error",
            Self::Timeout => "timeout",
            Self::ProviderUnavailable => "provider_unavailable",
        }
    }

    /// Transient failures are retried; hard declines fail at once.
    pub fn is_transient(self) -> bool {
        matches!(self, Self::ProcessingError | Self::Timeout | Self::ProviderUnavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decline_codes_are_hard_and_provider_errors_transient() {
        assert!(!FailureCode::CardDeclined.is_transient());
        assert!(!FailureCode::InsufficientFunds.is_transient());
        assert!(!FailureCode::ExpiredCard.is_transient());
        assert!(FailureCode::ProcessingError.is_transient());
        assert!(FailureCode::Timeout.is_transient());
    }
}
