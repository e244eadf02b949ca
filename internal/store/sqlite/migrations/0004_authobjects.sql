-- Records of the identity layer (store.AuthObjects): users, factors,
-- sessions, apps, devices, refresh tokens. data is sealed by package auth;
-- lookup is a keyed hash.
CREATE TABLE auth_objects (
	kind    TEXT    NOT NULL,
	id      TEXT    NOT NULL,
	lookup  BLOB,
	parent  TEXT    NOT NULL DEFAULT '',
	data    BLOB    NOT NULL,
	version INTEGER NOT NULL,
	expires INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (kind, id)
) STRICT, WITHOUT ROWID;

CREATE UNIQUE INDEX auth_objects_lookup ON auth_objects (kind, lookup) WHERE lookup IS NOT NULL;
CREATE INDEX auth_objects_parent ON auth_objects (kind, parent, id) WHERE parent <> '';
CREATE INDEX auth_objects_expires ON auth_objects (expires) WHERE expires <> 0;
