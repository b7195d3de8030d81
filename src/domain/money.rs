//! Money: amounts in minor units and ISO 4217 currencies. Never floats.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A strictly positive amount in the currency's minor unit (cents for USD).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Amount(i64);

// Through the constructor: zero, negative and oversized amounts never exist.
impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        Amount::new(n).map_err(|e| serde::de::Error::custom(format!("amount {e}")))
    }
}

/// Why a number is not an [`Amount`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("must be a positive integer")]
    NotPositive,
    #[error("must be at most {}", Amount::MAX.0)]
    TooLarge,
}

impl Amount {
    /// The largest accepted amount: twelve nines, far from `i64` overflow even
    /// when thousands of them are summed.
    pub const MAX: Amount = Amount(999_999_999_999);

    /// Parses a positive amount no larger than [`Amount::MAX`].
    pub fn new(minor_units: i64) -> Result<Self, AmountError> {
        if minor_units <= 0 {
            Err(AmountError::NotPositive)
        } else if minor_units > Self::MAX.0 {
            Err(AmountError::TooLarge)
        } else {
            Ok(Self(minor_units))
        }
    }

    /// The amount in minor units.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl sqlx::Type<sqlx::Postgres> for Amount {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <i64 as sqlx::Type<sqlx::Postgres>>::type_info()
    }
}

impl<'q> sqlx::Encode<'q, sqlx::Postgres> for Amount {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <i64 as sqlx::Encode<'q, sqlx::Postgres>>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for Amount {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let n = <i64 as sqlx::Decode<'r, sqlx::Postgres>>::decode(value)?;
        Amount::new(n).map_err(|e| format!("amount {n} in the database: {e}").into())
    }
}

impl utoipa::PartialSchema for Amount {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Integer)
            .format(Some(utoipa::openapi::schema::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Int64)))
            .minimum(Some(1))
            .maximum(Some(Amount::MAX.0))
            .description(Some("In the currency's minor unit"))
            .into()
    }
}

impl utoipa::ToSchema for Amount {}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An ISO 4217 currency that has a minor unit (so XAU, XDR … are refused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Currency(iso_currency::Currency);

impl Currency {
    /// Parses an alphabetic code, case-insensitively.
    pub fn parse(code: &str) -> Option<Self> {
        if code.len() != 3 {
            return None;
        }
        let c = iso_currency::Currency::from_code(&code.to_ascii_uppercase())?;
        c.exponent().map(|_| Self(c))
    }

    /// The upper-case code, e.g. `"USD"`.
    pub fn code(self) -> &'static str {
        self.0.code()
    }

    /// Digits after the decimal point (JPY 0, USD 2, KWD 3).
    #[allow(dead_code, reason = "for showing amounts in major units; only the tests do yet")]
    pub fn exponent(self) -> u16 {
        self.0.exponent().unwrap_or(0)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Currency::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown currency {s}")))
    }
}

impl sqlx::Type<sqlx::Postgres> for Currency {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <&str as sqlx::Type<sqlx::Postgres>>::type_info()
    }

    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <&str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
    }
}

impl<'q> sqlx::Encode<'q, sqlx::Postgres> for Currency {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <&str as sqlx::Encode<'q, sqlx::Postgres>>::encode_by_ref(&self.code(), buf)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for Currency {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let s = <&str as sqlx::Decode<'r, sqlx::Postgres>>::decode(value)?;
        Currency::parse(s).ok_or_else(|| format!("unknown currency {s:?} in the database").into())
    }
}

impl utoipa::PartialSchema for Currency {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("ISO 4217 alphabetic code, upper case"))
            .examples([serde_json::json!("USD")])
            .into()
    }
}

impl utoipa::ToSchema for Currency {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_must_be_positive_and_bounded() {
        assert_eq!(Amount::new(0), Err(AmountError::NotPositive));
        assert_eq!(Amount::new(-5), Err(AmountError::NotPositive));
        assert_eq!(Amount::new(1).unwrap().get(), 1);
        assert_eq!(Amount::new(Amount::MAX.get()).unwrap(), Amount::MAX);
        assert_eq!(Amount::new(Amount::MAX.get() + 1), Err(AmountError::TooLarge));
    }

    #[test]
    fn amounts_deserialize_through_their_constructor() {
        assert_eq!(serde_json::from_str::<Amount>("250").unwrap().get(), 250);
        for bad in ["0", "-1", "1000000000000", "1.5", "\"5\""] {
            assert!(serde_json::from_str::<Amount>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn currencies_are_case_insensitive_iso_codes() {
        assert_eq!(Currency::parse("usd").unwrap().code(), "USD");
        assert_eq!(Currency::parse("JPY").unwrap().exponent(), 0);
        assert_eq!(Currency::parse("KWD").unwrap().exponent(), 3);
        assert!(Currency::parse("XTS").is_none(), "the testing code has no minor unit");
        assert!(Currency::parse("ABC").is_none());
        assert!(Currency::parse("US").is_none());
        assert!(Currency::parse("USDD").is_none());
        assert!(Currency::parse("ÜSD").is_none());
    }
}
