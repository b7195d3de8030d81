//! API key kinds and what each may do (contract §2).

use super::text::text_enum;

text_enum! {
    /// What a key may do.
    pub enum KeyKind ("key kind") {
        /// `sk_test_` / `sk_live_`: every merchant operation.
        Secret = "secret",
        /// `pk_test_` / `pk_live_`: may only create payments.
        Publishable = "publishable",
        /// `sk_ops_`: operators.
        Ops = "ops",
    }
}

impl KeyKind {
    /// The prefix of a key of this kind in this mode.
    pub fn prefix(self, livemode: bool) -> &'static str {
        match (self, livemode) {
            (Self::Secret, false) => "sk_test_",
            (Self::Secret, true) => "sk_live_",
            (Self::Publishable, false) => "pk_test_",
            (Self::Publishable, true) => "pk_live_",
            (Self::Ops, _) => "sk_ops_",
        }
    }
}

text_enum! {
    /// What a stored payment method is.
    pub enum MethodKind ("payment method type") {
        /// A card.
        Card = "card",
        /// A bank account.
        BankAccount = "bank_account",
        /// A wallet.
        Wallet = "wallet",
    }
}
