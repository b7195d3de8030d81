//! Group commit for creates: the payments of concurrent requests are
//! written by one statement and one commit ([`super::intake::insert_all`]).
//!
//! A payment costs PostgreSQL six inserts, their index updates and a WAL
//! flush; written one per transaction, that is what caps intake. Here a
//! request hands its draft to a writer task and waits for its own row. At
//! most [`WRITERS`] batches are in flight; while they are, new drafts queue
//! and go out together in the next batch. Nothing waits on a timer, so a
//! lone request is written at once and latency at low load is unchanged.
//!
//! A batch is one statement: all its payments are committed or none is, and
//! a request answers only after its batch committed. When a batch fails on
//! a row's data (an `external_key` or pending `reference` taken, even by
//! another draft of the same batch), it is split in halves and each is tried
//! again, until each refused draft gets its own answer.

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::intake::{Draft, insert_all};
use super::payments::PaymentRow;

/// Batches written at once. Fewer writers make larger batches: two keep
/// one batch filling while the other commits.
pub const WRITERS: usize = 2;
/// The most drafts in one statement.
pub const MAX_BATCH: usize = 128;

type Job = (Arc<Draft>, Reply);
type Reply = oneshot::Sender<Result<PaymentRow, sqlx::Error>>;

/// The handle requests write their creates through; cheap to clone.
#[derive(Clone, Debug)]
pub struct Intake {
    jobs: mpsc::UnboundedSender<Job>,
}

impl Intake {
    /// Starts the writer task on the current runtime. It ends when the last
    /// handle is dropped, after writing what was handed to it.
    pub fn start(pool: PgPool, queue: &'static str) -> Self {
        let (jobs, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(pool, queue, rx));
        Self { jobs }
    }

    /// Inserts the draft with the next batch; answers its row once that
    /// batch committed.
    pub async fn insert(&self, draft: Arc<Draft>) -> Result<PaymentRow, sqlx::Error> {
        let (reply, answer) = oneshot::channel();
        // The channel is unbounded, but each sender waits for its answer, so
        // it never holds more drafts than there are requests in flight.
        crate::observe::intake_queued();
        self.jobs.send((draft, reply)).map_err(|_| sqlx::Error::PoolClosed)?;
        answer.await.unwrap_or(Err(sqlx::Error::PoolClosed))
    }
}

async fn run(pool: PgPool, queue: &'static str, mut rx: mpsc::UnboundedReceiver<Job>) {
    let writers = Arc::new(Semaphore::new(WRITERS));
    loop {
        let Ok(permit) = writers.clone().acquire_owned().await else { return };
        let Some(first) = rx.recv().await else { return };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        crate::observe::intake_batch(batch.len());
        let pool = pool.clone();
        tokio::spawn(async move {
            write(&pool, queue, batch).await;
            drop(permit);
        });
    }
}

async fn write(pool: &PgPool, queue: &str, batch: Vec<Job>) {
    // Halves of a refused batch are tried again until the refused drafts
    // stand alone: a few conflicts cost a few statements, not one per draft.
    let mut parts = vec![batch];
    while let Some(mut part) = parts.pop() {
        let drafts: Vec<&Draft> = part.iter().map(|(d, _)| d.as_ref()).collect();
        let result = match pool.acquire().await {
            Ok(mut conn) => insert_all(&mut conn, queue, &drafts).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(rows) => {
                for ((_, reply), row) in part.into_iter().zip(rows) {
                    let _ = reply.send(Ok(row));
                }
            }
            // A row's data was refused (a taken `external_key` or pending
            // `reference`, maybe by another draft of this batch): whose?
            Err(e) if part.len() > 1 && e.as_database_error().is_some() => {
                tracing::debug!(error = %e, drafts = part.len(), "batch refused; splitting it");
                let right = part.split_off(part.len() / 2);
                parts.push(right);
                parts.push(part);
            }
            // A draft's own refusal, or the database could not be reached:
            // every request of the part gets that answer.
            Err(e) => {
                let mut replies = part.into_iter().map(|(_, reply)| reply);
                let first = replies.next();
                for reply in replies {
                    let _ = reply.send(Err(same_failure(&e)));
                }
                if let Some(first) = first {
                    let _ = first.send(Err(e));
                }
            }
        }
    }
}

/// The failure of a batch, for each of its other requests (sqlx errors are
/// not `Clone`), keeping what decides between 503 and 500.
fn same_failure(e: &sqlx::Error) -> sqlx::Error {
    match e {
        sqlx::Error::PoolTimedOut => sqlx::Error::PoolTimedOut,
        sqlx::Error::PoolClosed => sqlx::Error::PoolClosed,
        sqlx::Error::Io(io) => sqlx::Error::Io(std::io::Error::new(io.kind(), io.to_string())),
        other => sqlx::Error::Protocol(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ApiError;

    #[test]
    fn a_shared_failure_keeps_its_answer_for_every_request_of_the_batch() {
        let status = |e: sqlx::Error| ApiError::from(e).status;
        // Unreachable database: 503 for all, not a 500 for all but the first.
        assert_eq!(status(same_failure(&sqlx::Error::PoolTimedOut)), 503);
        assert_eq!(status(same_failure(&sqlx::Error::PoolClosed)), 503);
        let io = sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset"));
        match same_failure(&io) {
            sqlx::Error::Io(copy) => assert_eq!(copy.kind(), std::io::ErrorKind::ConnectionReset),
            other => panic!("{other:?}"),
        }
        assert_eq!(status(same_failure(&sqlx::Error::RowNotFound)), 500);
    }
}
