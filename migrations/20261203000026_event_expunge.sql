-- `POST /v1/events/{id}/expunge` (contract §13): the event's data is
-- replaced with {} and the event says so.
ALTER TABLE events ADD COLUMN expunged boolean NOT NULL DEFAULT false;
