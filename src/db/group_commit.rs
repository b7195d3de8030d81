//! Group commit for creates: the payments of concurrent requests are
//! written by one statement and one commit ([`super::intake::insert_all`]),
//! through a [`Batcher`].
//!
//! A payment costs PostgreSQL six inserts, their index updates and a WAL
//! flush; written one per transaction, that is what caps intake. When a
//! batch fails on a row's data (an `external_key` or pending `reference`
//! taken, even by another draft of the same batch), the batcher splits it
//! until each refused draft gets its own answer.

use std::sync::Arc;

use sqlx::PgPool;

use super::batch::Batcher;
use super::intake::{Draft, insert_all};
use super::payments::PaymentRow;

/// The handle requests write their creates through; cheap to clone.
#[derive(Clone, Debug)]
pub struct Intake {
    batcher: Batcher<Draft, Option<PaymentRow>>,
}

impl Intake {
    /// Starts the writer task on the current runtime. It ends when the last
    /// handle is dropped, after writing what was handed to it.
    pub fn start(pool: PgPool, queue: &'static str) -> Self {
        let batcher = Batcher::start("intake", pool, move |pool, drafts: Vec<Arc<Draft>>| async move {
            let mut conn = pool.acquire().await?;
            let drafts: Vec<&Draft> = drafts.iter().map(AsRef::as_ref).collect();
            insert_all(&mut conn, queue, &drafts).await
        });
        Self { batcher }
    }

    /// Inserts the draft with the next batch; answers its row once that
    /// batch committed, or `None` when its `Idempotency-Key` was taken by
    /// another request meanwhile (nothing of it was written).
    pub async fn insert(&self, draft: Arc<Draft>) -> Result<Option<PaymentRow>, sqlx::Error> {
        self.batcher.submit(draft).await
    }
}
