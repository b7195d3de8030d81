//! Enums that travel as text: in JSON, in the database's `text` columns and
//! in metric labels. One declaration gives each its spelling, parsing,
//! serde, sqlx and OpenAPI forms, so a value read back that payd does not
//! know is an error (a decode error from sqlx, a 400 from serde), never a
//! silent default.

/// Declares a text enum: `text_enum! { /// doc  pub enum Name ("what") { /// doc  Variant = "text", … } }`.
/// `what` names the type in error messages ("unknown payment status …").
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every value, in declaration order.
            #[allow(dead_code, reason = "not every enum lists its values outside tests")]
            pub const ALL: &'static [$name] = &[$(Self::$variant),+];

            /// The wire and database spelling.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }

            /// Parses the wire spelling; `None` for anything else.
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($text => Some(Self::$variant),)+
                    _ => None,
                }
            }

            /// Every spelling, comma-separated, for error messages.
            pub fn names() -> String {
                [$($text),+].join(", ")
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <::std::borrow::Cow<'de, str> as ::serde::Deserialize>::deserialize(d)?;
                Self::parse(&s).ok_or_else(|| {
                    ::serde::de::Error::custom(format!("unknown {} {s:?}: expected one of {}", $what, Self::names()))
                })
            }
        }

        impl ::sqlx::Type<::sqlx::Postgres> for $name {
            fn type_info() -> ::sqlx::postgres::PgTypeInfo {
                <&str as ::sqlx::Type<::sqlx::Postgres>>::type_info()
            }

            fn compatible(ty: &::sqlx::postgres::PgTypeInfo) -> bool {
                <&str as ::sqlx::Type<::sqlx::Postgres>>::compatible(ty)
            }
        }

        impl ::sqlx::postgres::PgHasArrayType for $name {
            fn array_type_info() -> ::sqlx::postgres::PgTypeInfo {
                <&str as ::sqlx::postgres::PgHasArrayType>::array_type_info()
            }
        }

        impl<'q> ::sqlx::Encode<'q, ::sqlx::Postgres> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut ::sqlx::postgres::PgArgumentBuffer,
            ) -> Result<::sqlx::encode::IsNull, ::sqlx::error::BoxDynError> {
                <&str as ::sqlx::Encode<'q, ::sqlx::Postgres>>::encode_by_ref(&self.as_str(), buf)
            }
        }

        impl<'r> ::sqlx::Decode<'r, ::sqlx::Postgres> for $name {
            fn decode(value: ::sqlx::postgres::PgValueRef<'r>) -> Result<Self, ::sqlx::error::BoxDynError> {
                let s = <&str as ::sqlx::Decode<'r, ::sqlx::Postgres>>::decode(value)?;
                Self::parse(s).ok_or_else(|| format!("unknown {} {s:?} in the database", $what).into())
            }
        }

        impl ::utoipa::PartialSchema for $name {
            fn schema() -> ::utoipa::openapi::RefOr<::utoipa::openapi::schema::Schema> {
                ::utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(::utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($text),+]))
                    .into()
            }
        }

        impl ::utoipa::ToSchema for $name {}
    };
}

pub(crate) use text_enum;

#[cfg(test)]
mod tests {
    text_enum! {
        /// A test enum.
        pub enum Color ("color") {
            /// Red.
            Red = "red",
            /// Dark blue.
            DarkBlue = "dark_blue",
        }
    }

    #[test]
    fn spellings_round_trip_and_unknown_values_are_refused() {
        for c in Color::ALL {
            assert_eq!(Color::parse(c.as_str()), Some(*c));
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
            assert_eq!(serde_json::from_value::<Color>(serde_json::json!(c.as_str())).unwrap(), *c);
        }
        assert_eq!(Color::parse("Red"), None);
        let err = serde_json::from_str::<Color>("\"green\"").unwrap_err().to_string();
        assert!(err.contains("unknown color \"green\": expected one of red, dark_blue"), "{err}");
        assert_eq!(Color::names(), "red, dark_blue");
        assert_eq!(Color::DarkBlue.to_string(), "dark_blue");
    }
}
