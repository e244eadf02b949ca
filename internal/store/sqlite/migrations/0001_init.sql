-- 0001: the first schema.
--
-- Everything here is either metadata that names no person (resource types,
-- random ids, version numbers, write times, key ids), sealed bytes, or keyed
-- hashes. Times are unix microseconds, UTC. Tables are STRICT, so a value of
-- the wrong type is an error, never silently converted.

-- Every version of every resource, in write order: seq is the store's global
-- write order (store.Version.Seq). AUTOINCREMENT keeps seq from ever being
-- reused, even if the newest rows were one day removed, so history cursors
-- holding a seq stay meaningful.
CREATE TABLE versions (
	seq     INTEGER PRIMARY KEY AUTOINCREMENT,
	type    TEXT    NOT NULL,
	id      TEXT    NOT NULL,
	version INTEGER NOT NULL CHECK (version >= 1),
	updated INTEGER NOT NULL,
	deleted INTEGER NOT NULL CHECK (deleted IN (0, 1)),
	key_id  INTEGER NOT NULL,
	data    BLOB,    -- the sealed resource, or the sealed tombstone of a deletion
	UNIQUE (type, id, version)
) STRICT;

-- Type-level history, newest first.
CREATE INDEX versions_type_seq ON versions (type, seq);

-- The current version of each resource. A row exists from the resource's
-- first version on and is never removed; a delete sets deleted. tokens
-- lists the resource's rows in tokens (each token as a uvarint length and
-- its bytes), so that a Put replaces them without an index by resource:
-- each such index entry would be one more random page write per version.
CREATE TABLE heads (
	type    TEXT    NOT NULL,
	id      TEXT    NOT NULL,
	version INTEGER NOT NULL,
	seq     INTEGER NOT NULL REFERENCES versions (seq),
	deleted INTEGER NOT NULL CHECK (deleted IN (0, 1)),
	tokens  BLOB,
	PRIMARY KEY (type, id)
) WITHOUT ROWID, STRICT;

-- Blind-index tokens of current, undeleted resources: keyed hashes of
-- (search parameter, normalized value). A Put replaces a resource's rows
-- (heads.tokens says which); a delete removes them.
CREATE TABLE tokens (
	type  TEXT NOT NULL,
	token BLOB NOT NULL,
	id    TEXT NOT NULL,
	PRIMARY KEY (type, token, id)
) WITHOUT ROWID, STRICT;

-- Data keys, wrapped by the key-encryption key, which is never here. An
-- owner is "Patient/<id>" or "store". AUTOINCREMENT: a key id is never
-- reused, so versions sealed under a deleted (crypto-shredded) key can
-- never point at another key.
CREATE TABLE data_keys (
	id      INTEGER PRIMARY KEY AUTOINCREMENT,
	owner   TEXT NOT NULL UNIQUE,
	wrapped BLOB NOT NULL
) STRICT;

-- API bearer tokens: only the SHA-256 of each token is kept.
CREATE TABLE auth_tokens (
	id      TEXT    NOT NULL PRIMARY KEY,
	hash    BLOB    NOT NULL UNIQUE,
	label   TEXT    NOT NULL,
	created INTEGER NOT NULL,
	expires INTEGER NOT NULL,
	revoked INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1))
) STRICT;
