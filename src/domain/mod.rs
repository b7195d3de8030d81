//! The domain: ids, money, the payment state machine, the states and kinds
//! of transactions, attempts, deliveries and keys, event types and queue
//! messages. Pure code, no I/O, so every rule is unit-tested without a
//! database; its enums know their own text form (see [`text`]).

pub(crate) mod events;
pub(crate) mod failure;
pub(crate) mod ids;
pub(crate) mod keys;
pub(crate) mod messages;
pub(crate) mod money;
pub(crate) mod nul;
pub(crate) mod payment;
pub(crate) mod tenant;
mod text;
pub(crate) mod transaction;
pub(crate) mod webhook;

pub use events::EventType;
pub use failure::FailureCode;
pub use ids::*;
pub use keys::{KeyKind, MethodKind, bearer_key};
pub use messages::WorkMessage;
pub use money::{Amount, Currency};
pub use nul::nul_field;
pub use payment::{Balances, PaymentStatus, Refusal, Transition};
pub use tenant::{Principal, SYSTEM_ACTOR, Scope, Viewer};
pub use transaction::{AttemptStatus, HoldStatus, TransactionKind, TransactionStatus};
pub use webhook::{DeliveryStatus, EndpointStatus};
