-- The W3C trace context a task's attempts continue: `traceparent`, then
-- `tracestate` on a second line if any. Kept while the task is live; a
-- finished task's trace is the tracing backend's to keep.
ALTER TABLE tasks ADD COLUMN trace_context TEXT;
