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

/// Longest `Authorization` value accepted (contract §11).
pub const AUTHORIZATION_MAX: usize = 200;

/// The key of an `Authorization` value: `Bearer` in any case, one space, a
/// key of visible ASCII. Everything else is `None` (401): one spelling per
/// key, so a rate limit keyed on this cannot be escaped by respelling.
pub fn bearer_key(value: &str) -> Option<&str> {
    if value.len() > AUTHORIZATION_MAX {
        return None;
    }
    let (scheme, key) = value.split_at_checked(7)?;
    let visible = |b: u8| b.is_ascii_graphic();
    (scheme.eq_ignore_ascii_case("bearer ") && !key.is_empty() && key.bytes().all(visible)).then_some(key)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_spelling_per_key() {
        assert_eq!(bearer_key("Bearer sk_test_1"), Some("sk_test_1"));
        assert_eq!(bearer_key("bearer sk_test_1"), Some("sk_test_1"));
        assert_eq!(bearer_key("BEARER sk_test_1"), Some("sk_test_1"));
        for bad in [
            "Bearer  sk_test_1",
            "Bearer sk_test_1 ",
            "Bearer\tsk_test_1",
            " Bearer sk_test_1",
            "Basic sk_test_1",
            "Bearer ",
            "Bearer",
            "sk_test_1",
            "Bearer sk_test_\u{e9}",
        ] {
            assert_eq!(bearer_key(bad), None, "{bad:?}");
        }
        let long = format!("Bearer {}", "k".repeat(AUTHORIZATION_MAX - 7));
        assert!(bearer_key(&long).is_some());
        assert_eq!(bearer_key(&format!("{long}k")), None);
    }
}
