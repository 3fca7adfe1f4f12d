-- Migration 6: what an attempt's record keeps of the sandbox's report
-- beyond its outcome: whether the guest's output was cut, the most memory
-- it reached, and the directive requests refused, with why (a JSON list).

ALTER TABLE attempts ADD COLUMN output_truncated BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE attempts ADD COLUMN peak_memory_bytes BIGINT;
ALTER TABLE attempts ADD COLUMN refused_directives TEXT NOT NULL DEFAULT '[]';
