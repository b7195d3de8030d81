//! The domain: ids, money, the payment state machine, event types. Pure code,
//! no I/O, so every rule is unit-tested without a database.

pub mod events;
pub mod failure;
pub mod ids;
pub mod money;
pub mod payment;

pub use events::EventType;
pub use failure::FailureCode;
pub use ids::*;
pub use money::{Amount, Currency};
pub use payment::{Balances, PaymentStatus, Refusal, Transition};
