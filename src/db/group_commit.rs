//! Group commit: concurrent callers hand their job to a writer task, which
//! runs the jobs of all of them with one statement (or one transaction) and
//! answers each its own result. This is payd's one mechanism for it; each
//! stage below is a [`GroupCommit`] with its own writer.
//!
//! A statement's fixed cost (round trip, executor start-up, WAL flush at
//! commit) outweighs the rows it writes, so a stage that writes one row per
//! statement is capped by that cost; grouping spreads it. At most
//! `writers` batches are in flight; while they are, new jobs queue and go
//! out together in the next batch. Nothing waits on a timer, so a lone job
//! is written at once and latency at low load is unchanged.
//!
//! A batch is all or nothing, and each caller answers only after its batch
//! committed. When a batch fails on a row's data (a constraint, a deadlock),
//! it is split in halves and each is tried again, until each refused job
//! gets its own answer; a failure that is not the data's (the database is
//! unreachable) answers every job of the batch with it.
//!
//! | stage (metrics label) | where | one batch writes | in | a job of a split batch gets |
//! |---|---|---|---|---|
//! | `create` | [`super::creates`] | payments with their transaction, attempt #1, outbox row, `payment.created` event, deliveries and `Idempotency-Key` answers | one statement | its own 409/422 (a taken `external_key`, `reference` or key) |
//! | `claim` | `worker::group_commit` | the claims of due attempts (`scheduled` → `running`, each with its caller's token) | one statement | its claim, or nothing when another worker has the attempt |
//! | `outcome` | `worker::group_commit` | final charge outcomes: attempts finished, transactions and payments settled, events and deliveries | one transaction | written, claim lost, or left to its caller's own transaction |
//! | `delivery` | `dispatcher::delivery` | successful webhook sends: log rows, deliveries `succeeded`, endpoints' failure streaks ended | one statement | whether its claim was still current |
//! | `sandbox` | `provider::sandbox` | sandbox ledger rows of calls whose outcome is fixed | one statement | the outcome the ledger stands by |

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use sqlx::PgPool;
use tokio::sync::{Semaphore, mpsc, oneshot};

type Reply<R> = oneshot::Sender<Result<R, sqlx::Error>>;
type Job<J, R> = (Arc<J>, Reply<R>);

/// One stage's writer: the handle callers submit jobs through; cheap to clone.
pub struct GroupCommit<J, R> {
    jobs: mpsc::UnboundedSender<Job<J, R>>,
    stage: &'static str,
    counts: Arc<Counts>,
}

impl<J, R> Clone for GroupCommit<J, R> {
    fn clone(&self) -> Self {
        Self { jobs: self.jobs.clone(), stage: self.stage, counts: self.counts.clone() }
    }
}

/// What the writers of one stage on one database did in this process: the
/// metrics say the same for the whole process, these for one database, so a
/// test reads its own among others running beside it.
#[derive(Debug, Default)]
pub struct Counts {
    /// Jobs handed to the writers.
    pub submitted: AtomicU64,
    /// Batches taken from the queue.
    pub batches: AtomicU64,
    /// Jobs in those batches.
    pub jobs: AtomicU64,
}

/// Counts by database and stage.
type CountsByStage = HashMap<(String, &'static str), Arc<Counts>>;

static COUNTS: LazyLock<Mutex<CountsByStage>> = LazyLock::new(Mutex::default);

/// The counts of `stage` on `pool`'s database (zeros before its first writer starts).
pub fn counts(pool: &PgPool, stage: &'static str) -> Arc<Counts> {
    let mut all = COUNTS.lock().unwrap_or_else(|e| e.into_inner());
    all.entry((super::identity(pool), stage)).or_default().clone()
}

impl<J, R> std::fmt::Debug for GroupCommit<J, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").field("stage", &self.stage).finish()
    }
}

/// Batches in flight at once, per stage. Fewer writers make larger batches:
/// two keep one batch filling while the other commits (docs/PERFORMANCE.md
/// has the measurements behind the number).
pub const WRITERS: usize = 2;
/// The most jobs in one batch.
pub const MAX_BATCH: usize = 128;

impl<J: Send + Sync + 'static, R: Send + 'static> GroupCommit<J, R> {
    /// Starts the writer task of `stage` (its metrics label) on the current
    /// runtime, with [`WRITERS`] batches of at most [`MAX_BATCH`] jobs in
    /// flight. `write` runs a batch on `pool` and answers one result per
    /// job, in order. The task ends when the last handle is dropped, after
    /// writing what was handed to it.
    pub fn start<F, Fut>(stage: &'static str, pool: PgPool, write: F) -> Self
    where
        F: Fn(PgPool, Vec<Arc<J>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<R>, sqlx::Error>> + Send + 'static,
    {
        Self::start_with(stage, pool, WRITERS, MAX_BATCH, write)
    }

    /// [`Self::start`] with `writers` batches of at most `max_batch` jobs.
    pub fn start_with<F, Fut>(stage: &'static str, pool: PgPool, writers: usize, max_batch: usize, write: F) -> Self
    where
        F: Fn(PgPool, Vec<Arc<J>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<R>, sqlx::Error>> + Send + 'static,
    {
        let (jobs, rx) = mpsc::unbounded_channel();
        let counts = counts(&pool, stage);
        let write = Arc::new(move |jobs| write(pool.clone(), jobs));
        tokio::spawn(run(stage, counts.clone(), writers.max(1), max_batch.max(1), write, rx));
        Self { jobs, stage, counts }
    }

    /// Runs the job with the next batch; answers its result once that batch
    /// committed.
    pub async fn submit(&self, job: Arc<J>) -> Result<R, sqlx::Error> {
        let (reply, answer) = oneshot::channel();
        // The channel is unbounded, but each sender waits for its answer, so
        // it never holds more jobs than there are callers waiting.
        crate::observe::batch_queued(self.stage);
        self.counts.submitted.fetch_add(1, Ordering::Relaxed);
        self.jobs.send((job, reply)).map_err(|_| sqlx::Error::PoolClosed)?;
        answer.await.unwrap_or(Err(sqlx::Error::PoolClosed))
    }
}

async fn run<J, R, W, Fut>(
    stage: &'static str,
    counts: Arc<Counts>,
    writers: usize,
    max_batch: usize,
    write: Arc<W>,
    mut rx: mpsc::UnboundedReceiver<Job<J, R>>,
) where
    J: Send + Sync + 'static,
    R: Send + 'static,
    W: Fn(Vec<Arc<J>>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<R>, sqlx::Error>> + Send + 'static,
{
    let writers = Arc::new(Semaphore::new(writers));
    loop {
        let Ok(permit) = writers.clone().acquire_owned().await else { return };
        let Some(first) = rx.recv().await else { return };
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        crate::observe::batch(stage, batch.len());
        counts.batches.fetch_add(1, Ordering::Relaxed);
        counts.jobs.fetch_add(batch.len() as u64, Ordering::Relaxed);
        let write = write.clone();
        tokio::spawn(async move {
            write_in_parts(stage, write.as_ref(), batch).await;
            drop(permit);
        });
    }
}

async fn write_in_parts<J, R, W, Fut>(stage: &'static str, write: &W, batch: Vec<Job<J, R>>)
where
    W: Fn(Vec<Arc<J>>) -> Fut,
    Fut: Future<Output = Result<Vec<R>, sqlx::Error>>,
{
    // Halves of a refused batch are tried again until the refused jobs
    // stand alone: a few conflicts cost a few statements, not one per job.
    let mut parts = vec![batch];
    while let Some(mut part) = parts.pop() {
        let jobs = part.iter().map(|(j, _)| j.clone()).collect();
        match write(jobs).await {
            Ok(results) if results.len() == part.len() => {
                for ((_, reply), result) in part.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            Ok(results) => {
                tracing::error!(
                    stage,
                    jobs = part.len(),
                    results = results.len(),
                    "batch answered the wrong number of results"
                );
                answer_all(part, sqlx::Error::Protocol("batch answered the wrong number of results".into()));
            }
            Err(e) if part.len() > 1 && e.as_database_error().is_some() => {
                tracing::debug!(stage, error = %e, jobs = part.len(), "batch refused; splitting it");
                let right = part.split_off(part.len() / 2);
                parts.push(right);
                parts.push(part);
            }
            Err(e) => answer_all(part, e),
        }
    }
}

/// Every job of `part` gets `e`: the first the error itself, the others a
/// copy that keeps what decides between 503 and 500.
fn answer_all<J, R>(part: Vec<Job<J, R>>, e: sqlx::Error) {
    let mut replies = part.into_iter().map(|(_, reply)| reply);
    let first = replies.next();
    for reply in replies {
        let _ = reply.send(Err(same_failure(&e)));
    }
    if let Some(first) = first {
        let _ = first.send(Err(e));
    }
}

/// The failure of a batch, for each of its other jobs (sqlx errors are
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
    use std::sync::Mutex;

    use super::*;

    /// A refusal of a row's data, as Postgres would send it.
    #[derive(Debug)]
    struct Refused;

    impl std::fmt::Display for Refused {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("refused")
        }
    }

    impl std::error::Error for Refused {}

    impl sqlx::error::DatabaseError for Refused {
        fn message(&self) -> &str {
            "refused"
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::UniqueViolation
        }
    }

    #[tokio::test]
    async fn a_refused_batch_is_split_until_each_refused_job_stands_alone() {
        // No database is reached: the write function stands for the statement.
        let pool = PgPool::connect_lazy("postgres://127.0.0.1:1/none").unwrap();
        let seen: Arc<Mutex<Vec<Vec<u32>>>> = Arc::default();
        let log = seen.clone();
        // Job 13 is refused; a batch holding it fails whole, like a statement.
        let batcher = GroupCommit::start_with("test", pool, 1, 64, move |_pool, jobs: Vec<Arc<u32>>| {
            let log = log.clone();
            async move {
                let jobs: Vec<u32> = jobs.iter().map(|j| **j).collect();
                log.lock().unwrap().push(jobs.clone());
                if jobs.contains(&13) {
                    return Err(sqlx::Error::Database(Box::new(Refused)));
                }
                Ok(jobs.iter().map(|j| j * 2).collect())
            }
        });
        // The first job holds the only writer while the other 31 queue.
        let answers = futures_util::future::join_all((0..32u32).map(|i| {
            let batcher = batcher.clone();
            async move { (i, batcher.submit(Arc::new(i)).await) }
        }))
        .await;
        for (i, answer) in answers {
            match answer {
                Ok(doubled) => assert_eq!(doubled, i * 2, "job {i} got its own answer"),
                Err(e) => {
                    assert_eq!(i, 13, "only the refused job fails");
                    assert!(e.as_database_error().is_some(), "with the database's own error: {e}");
                }
            }
        }
        let batches = seen.lock().unwrap().clone();
        let refused: Vec<&Vec<u32>> = batches.iter().filter(|b| b.contains(&13)).collect();
        assert_eq!(refused.last().map(|b| b.len()), Some(1), "split down to the refused job: {batches:?}");
        // Halving: a few statements, not one per job.
        assert!(batches.len() < 20, "{} statements for 32 jobs: {batches:?}", batches.len());
        let written: usize = batches.iter().filter(|b| !b.contains(&13)).map(Vec::len).sum();
        assert_eq!(written, 31, "every other job written exactly once: {batches:?}");
    }

    #[test]
    fn a_shared_failure_keeps_its_answer_for_every_job_of_the_batch() {
        // Unreachable database: the same kind for all (a 503 to clients),
        // not a 500 for all but the first.
        assert!(matches!(same_failure(&sqlx::Error::PoolTimedOut), sqlx::Error::PoolTimedOut));
        assert!(matches!(same_failure(&sqlx::Error::PoolClosed), sqlx::Error::PoolClosed));
        let io = sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset"));
        match same_failure(&io) {
            sqlx::Error::Io(copy) => assert_eq!(copy.kind(), std::io::ErrorKind::ConnectionReset),
            other => panic!("{other:?}"),
        }
        assert!(matches!(same_failure(&sqlx::Error::RowNotFound), sqlx::Error::Protocol(_)));
    }
}
