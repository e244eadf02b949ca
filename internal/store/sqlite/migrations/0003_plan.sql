-- 0003: what search plans and restrictions need.
--
-- Security labels of each version (store.Index.Labels): keyed hashes, one
-- row per label, and only for labelled versions, so that a restriction to
-- some labels is a NOT EXISTS on this table's primary key, for a head
-- (heads.seq) as for any version in a history.
CREATE TABLE labels (
	seq   INTEGER NOT NULL REFERENCES versions (seq),
	label BLOB    NOT NULL,
	PRIMARY KEY (seq, label)
) WITHOUT ROWID, STRICT;

-- A resource's values under one key, for sorting by them and for checking
-- a value condition on a resource found by another condition.
CREATE INDEX vals_id ON vals (type, key, id);

-- The current resources of a type under some data keys: the caller's
-- restriction, when it is what narrows a search most; and a small index
-- that counts and lists a type's current resources without reading the
-- heads' token lists.
CREATE INDEX heads_key ON heads (type, key_id) WHERE deleted = 0;

-- History restricted to some data keys.
CREATE INDEX versions_key ON versions (key_id, seq);
