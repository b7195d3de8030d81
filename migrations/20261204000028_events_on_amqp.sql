-- amqp.publish_events: a session that has `payd.publish_events` on (the
-- processes configured so) writes, in the statement that records events,
-- one outbox row per event; the relay publishes it to the events exchange
-- after the commit. One statement-level trigger covers every place that
-- records events, and costs nothing when the setting is off.
CREATE FUNCTION payd_events_to_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox (queue, payload)
    SELECT '@events', jsonb_build_object('event_id', n.id) FROM recorded n;
    -- Delivered at commit, like the processes' own rings.
    PERFORM pg_notify('payd_outbox', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER events_to_outbox AFTER INSERT ON events
    REFERENCING NEW TABLE AS recorded
    FOR EACH STATEMENT
    WHEN (current_setting('payd.publish_events', true) = 'on')
    EXECUTE FUNCTION payd_events_to_outbox();
