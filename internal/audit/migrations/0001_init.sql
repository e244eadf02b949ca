-- 0001: the audit log's first schema. The log lives in its own file
-- (audit.db), apart from the records, and is append-only: the triggers
-- below refuse every UPDATE and DELETE through SQLite. Someone who edits
-- the file some other way is caught by `ehrvault audit verify`.

-- The entries, in log order: idx is the entry's index in the Merkle tree
-- (its rowid, so entries are stored in order and appended at the end, and
-- an append writes only the last pages). sealed is the entry's canonical
-- encoding (the Merkle leaf), sealed with XChaCha20-Poly1305 under a key
-- derived from the KEK, bound to idx. hashes holds the tree hashes this
-- entry completes (golang.org/x/mod's tlog.StoredHashes: the leaf hash,
-- then one hash per level it closes), 32 bytes each, so that proofs need
-- no recomputation. time is the entry's time in unix microseconds.
--
-- There is no index on anything else: each would be a random page write
-- per entry. The server finds entries by patient, agent, resource, action
-- and time through an index it keeps in memory, built from the entries.
CREATE TABLE entries (
	idx    INTEGER PRIMARY KEY,
	time   INTEGER NOT NULL,
	sealed BLOB    NOT NULL,
	hashes BLOB    NOT NULL
) STRICT;

-- Signed checkpoints: the tree's size and root hash in the signed-note
-- format (golang.org/x/mod/sumdb/note), one every so many entries or
-- seconds. Each names the size of the one before, so a removed checkpoint
-- breaks the chain.
CREATE TABLE checkpoints (
	size INTEGER PRIMARY KEY,
	time INTEGER NOT NULL,
	note BLOB    NOT NULL
) STRICT;

-- Facts about the log: its origin (the checkpoints' first line) and the
-- key that verifies them.
CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
) STRICT;

CREATE TRIGGER entries_no_update BEFORE UPDATE ON entries BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER entries_no_delete BEFORE DELETE ON entries BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER meta_no_update BEFORE UPDATE ON meta BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER meta_no_delete BEFORE DELETE ON meta BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
