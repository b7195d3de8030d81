//! Who acts and who reads: the authenticated key, the tenant a change runs
//! for, and the bounds of what a reader may see.

use super::ids::{ApiKeyId, MerchantId};
use super::keys::KeyKind;

/// The audit log's actor of changes no key asked for (workers, the
/// scheduler, providers).
pub const SYSTEM_ACTOR: &str = "system";

/// Who is calling: the authenticated key.
#[derive(Clone, Debug)]
pub struct Principal {
    /// The key's id (the actor in logs).
    pub key_id: ApiKeyId,
    /// Its kind.
    pub kind: KeyKind,
    /// The merchant it belongs to; `None` for ops keys.
    pub merchant_id: Option<MerchantId>,
    /// Live or test mode.
    pub livemode: bool,
}

/// Which tenant and mode a change runs for, and who asks for it.
#[derive(Clone, Debug)]
pub struct Scope {
    /// The merchant.
    pub merchant_id: MerchantId,
    /// Live or test mode.
    pub livemode: bool,
    /// The API key id acting, or [`SYSTEM_ACTOR`] (the audit log's actor).
    pub actor: String,
    /// The acting key's kind; `None` for changes no key asked for.
    pub key_kind: Option<KeyKind>,
}

impl Scope {
    /// A scope for changes no key asked for (workers, providers).
    pub fn system(merchant_id: MerchantId, livemode: bool) -> Self {
        Self { merchant_id, livemode, actor: SYSTEM_ACTOR.to_owned(), key_kind: None }
    }
}

/// Who may read payments and attempts: one tenant in one mode, or every
/// merchant in both modes (operators).
#[derive(Clone, Debug)]
pub enum Viewer {
    /// A merchant's secret key.
    Merchant(Scope),
    /// An operator key (`sk_ops_…`).
    Operator,
}

impl Viewer {
    /// The merchant and mode a query is limited to; `(None, None)` for operators.
    pub fn bounds(&self) -> (Option<&MerchantId>, Option<bool>) {
        match self {
            Self::Merchant(s) => (Some(&s.merchant_id), Some(s.livemode)),
            Self::Operator => (None, None),
        }
    }
}
