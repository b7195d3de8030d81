-- The scheduler looks for two kinds of due attempts; give each its own small
-- index so a long backlog of enqueued attempts costs nothing per pass.
DROP INDEX IF EXISTS attempts_due;
-- Retries that were never enqueued, by due time.
CREATE INDEX attempts_due_unqueued ON attempts (scheduled_at) WHERE status = 'scheduled' AND enqueued_at IS NULL;
-- Enqueued attempts, by when, to find messages that went missing.
CREATE INDEX attempts_enqueued ON attempts (enqueued_at) WHERE status = 'scheduled' AND enqueued_at IS NOT NULL;
