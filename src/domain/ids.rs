//! Typed identifiers: a type prefix plus a UUIDv7 in lowercase hex.
//!
//! UUIDv7 is time-ordered, so ids sort by creation time and B-tree indexes
//! stay append-only. Ids are parsed at the edge (`PaymentId::parse`); an id
//! with the wrong prefix or shape is "unknown" (404), never a 500.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
        #[serde(transparent)]
        pub struct $name(String);

        #[allow(dead_code, reason = "not every id is generated, or named by its prefix, outside tests")]
        impl $name {
            /// The type prefix, `"<type>_"`.
            pub const PREFIX: &'static str = $prefix;

            /// A fresh, time-ordered id.
            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, uuid::Uuid::now_v7().simple()))
            }

            /// Parses an id; `None` when the prefix or the body is wrong.
            pub fn parse(s: &str) -> Option<Self> {
                let body = s.strip_prefix($prefix)?;
                let ok = body.len() == 32 && body.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
                ok.then(|| Self(s.to_owned()))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        // Through the parser: a message, a request or a row holding a
        // malformed id is refused, never carried along.
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str> as Deserialize>::deserialize(d)?;
                Self::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("not a {}… id: {s:?}", $prefix)))
            }
        }

        impl sqlx::Type<sqlx::Postgres> for $name {
            fn type_info() -> sqlx::postgres::PgTypeInfo {
                <&str as sqlx::Type<sqlx::Postgres>>::type_info()
            }

            fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
                <&str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
            }
        }

        impl sqlx::postgres::PgHasArrayType for $name {
            fn array_type_info() -> sqlx::postgres::PgTypeInfo {
                <&str as sqlx::postgres::PgHasArrayType>::array_type_info()
            }
        }

        impl<'q> sqlx::Encode<'q, sqlx::Postgres> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut sqlx::postgres::PgArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&str as sqlx::Encode<'q, sqlx::Postgres>>::encode_by_ref(&self.as_str(), buf)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Postgres> for $name {
            fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                let s = <&str as sqlx::Decode<'r, sqlx::Postgres>>::decode(value)?;
                Self::parse(s).ok_or_else(|| format!("not a {}… id in the database: {s:?}", $prefix).into())
            }
        }
    };
}

typed_id!(/// A merchant (`mer_…`).
    MerchantId, "mer_");
typed_id!(/// An API key's id (`key_…`); never the key itself.
    ApiKeyId, "key_");
typed_id!(/// A payment (`pay_…`).
    PaymentId, "pay_");
typed_id!(/// A transaction on a payment (`txn_…`).
    TransactionId, "txn_");
typed_id!(/// A refund (`ref_…`).
    RefundId, "ref_");
typed_id!(/// One provider call for a transaction (`att_…`).
    AttemptId, "att_");
typed_id!(/// A stored payment method (`pm_…`); the sandbox's built-in
    /// `pm_test_…` methods are not stored and do not parse as one.
    PaymentMethodId, "pm_");
typed_id!(/// A merchant's account at a provider (`pa_…`).
    ProviderAccountId, "pa_");
typed_id!(/// A webhook endpoint (`we_…`).
    EndpointId, "we_");
typed_id!(/// An event (`evt_…`).
    EventId, "evt_");
typed_id!(/// One event's delivery to one endpoint (`whd_…`).
    DeliveryId, "whd_");
typed_id!(/// An operator's hold on scheduled attempts (`hold_…`).
    HoldId, "hold_");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_back() {
        let id = PaymentId::generate();
        assert!(id.as_str().starts_with("pay_"));
        assert_eq!(PaymentId::parse(id.as_str()), Some(id));
    }

    #[test]
    fn wrong_prefix_or_shape_is_refused() {
        let id = PaymentId::generate();
        assert_eq!(RefundId::parse(id.as_str()), None);
        assert_eq!(PaymentId::parse("pay_"), None);
        assert_eq!(PaymentId::parse("pay_0123456789ABCDEF0123456789abcdef"), None);
        assert_eq!(PaymentId::parse("pay_../../etc/passwd"), None);
    }

    #[test]
    fn ids_deserialize_through_their_parser() {
        let id = PaymentId::generate();
        let back: PaymentId = serde_json::from_value(serde_json::json!(id.as_str())).unwrap();
        assert_eq!(back, id);
        let err = serde_json::from_str::<PaymentId>("\"pay_nope\"").unwrap_err().to_string();
        assert!(err.contains("not a pay_… id"), "{err}");
        assert!(serde_json::from_value::<AttemptId>(serde_json::json!(id.as_str())).is_err());
    }

    #[test]
    fn ids_sort_by_creation() {
        let a = EventId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = EventId::generate();
        assert!(a < b);
    }
}
