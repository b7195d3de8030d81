//! Why a provider call, an attempt or a payment did not succeed, and
//! whether that is worth retrying.

use super::text::text_enum;

text_enum! {
    /// Why something failed: the `error_code` of attempts, transactions and
    /// payments.
    pub enum FailureCode ("failure code") {
        /// Hard decline.
        CardDeclined = "card_declined",
        /// Hard decline.
        InsufficientFunds = "insufficient_funds",
        /// Hard decline.
        ExpiredCard = "expired_card",
        /// Transient: the provider had a problem; retry.
        ProcessingError = "processing_error",
        /// Transient: no answer in time; the outcome is unknown, so a retry must
        /// reuse the same provider idempotency key.
        Timeout = "timeout",
        /// Transient: could not reach the provider.
        ProviderUnavailable = "provider_unavailable",
        /// Hard: the provider refused the call as misconfigured (a 401, 403,
        /// 404, 409 or 422 without a decline code): payd's or the gateway's
        /// setup is wrong, the card is not at fault.
        ProviderError = "provider_error",
        /// Not the provider's: the scheduled retry was canceled (by an
        /// operator or the merchant), so the payment failed.
        RetryCanceled = "retry_canceled",
        /// Not the provider's: the attempt was canceled with its payment
        /// before it ran.
        Canceled = "canceled",
        /// Not the provider's word: an operator settled an unknown outcome
        /// as failed (`POST /v1/transactions/{id}/resolve`).
        ResolvedFailed = "resolved_failed",
    }
}

impl FailureCode {
    /// A code a provider (or gateway) gave for a failure: the codes payd
    /// knows for provider calls; anything else is a card decline.
    pub fn from_provider(code: Option<&str>) -> Self {
        match code.and_then(Self::parse) {
            Some(Self::RetryCanceled | Self::Canceled | Self::ProviderError | Self::ResolvedFailed) | None => {
                Self::CardDeclined
            }
            Some(known) => known,
        }
    }

    /// A decline of the card by its issuer.
    pub fn is_decline(self) -> bool {
        matches!(self, Self::CardDeclined | Self::InsufficientFunds | Self::ExpiredCard)
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
        assert!(!FailureCode::RetryCanceled.is_transient());
        assert!(FailureCode::ProcessingError.is_transient());
        assert!(FailureCode::Timeout.is_transient());
        assert!(FailureCode::ProviderUnavailable.is_transient());
    }

    #[test]
    fn provider_codes_payd_does_not_know_are_declines() {
        assert_eq!(FailureCode::from_provider(Some("insufficient_funds")), FailureCode::InsufficientFunds);
        assert_eq!(FailureCode::from_provider(Some("timeout")), FailureCode::Timeout);
        assert_eq!(FailureCode::from_provider(Some("do_not_honor")), FailureCode::CardDeclined);
        assert_eq!(FailureCode::from_provider(Some("retry_canceled")), FailureCode::CardDeclined);
        assert_eq!(FailureCode::from_provider(None), FailureCode::CardDeclined);
    }
}
