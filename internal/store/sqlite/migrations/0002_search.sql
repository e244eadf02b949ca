-- 0002: search. Values held in the clear for range search and sorting
-- (clinical dates and quantities: nothing that names anybody; the caller
-- decides, docs/SECURITY.md argues it), and each head's data key, so that
-- a caller's restriction to some patients' compartments is a condition
-- inside the query.

ALTER TABLE heads ADD COLUMN key_id INTEGER NOT NULL DEFAULT 0;
UPDATE heads SET key_id = (SELECT key_id FROM versions WHERE versions.seq = heads.seq);

-- heads.vals lists the resource's rows in vals (key, lo, hi), so that a
-- Put replaces them by primary key, as heads.tokens does for tokens.
ALTER TABLE heads ADD COLUMN vals BLOB;

-- One row per value: key is a keyed hash of (type, parameter[, unit]);
-- lo and hi bound the value (both included): milliseconds since 1970 for
-- dates, the number for quantities; ±Inf for an open end.
CREATE TABLE vals (
	type TEXT NOT NULL,
	key  BLOB NOT NULL,
	lo   REAL NOT NULL,
	hi   REAL NOT NULL,
	id   TEXT NOT NULL,
	PRIMARY KEY (type, key, lo, hi, id)
) WITHOUT ROWID, STRICT;
