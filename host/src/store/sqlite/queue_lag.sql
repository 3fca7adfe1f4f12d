-- Migration 7: each handler's oldest waiting (available or retryable)
-- delivery, found in one index step for the queue lag that `/metrics` and
-- status show (`sql::oldest_waiting`), however deep the queue.

CREATE INDEX deliveries_waiting_by_handler ON deliveries (handler, scheduled_at)
    WHERE state IN ('available', 'retryable');
