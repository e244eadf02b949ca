// Package keyring is the only part of ehrvault that touches key material. It
// unseals the key-encryption key (KEK), wraps and unwraps the per-owner data
// keys that seal resource versions, seals and opens those versions, and
// derives the keys that other packages need (blind index, cursors, audit
// signing, tokens).
//
//	passphrase ─argon2id─▶ sealing key ─unseals─▶ KEK      (key file; KMS later)
//	KEK ─HKDF "ehrvault/wrap/v1"─▶ wrapping key ─wraps─▶ data keys ("Patient/…", "store")
//	KEK ─HKDF "ehrvault/v1/"+purpose─▶ derived keys (index, cursor, audit-signing, token)
//	data key ─AES-256-GCM─▶ sealed resource versions
//
// A [Provider] holds the KEK; [FileProvider] is the local one, a passphrase
// file created by [CreateKeyFile] and opened by [OpenKeyFile]. A [Keyring]
// sits on a Provider and a [store.KeyStore]: it finds or creates an owner's
// [DataKey], keeps recently used ones unwrapped in a bounded cache, and caches
// derived keys.
//
// # What it promises
//
//   - The KEK is never written anywhere but the key file, and there only
//     sealed under a key derived from the passphrase with argon2id. Data
//     keys are stored only wrapped; derived keys are never stored.
//   - A wrapped data key is bound to its owner: moved to another owner's row
//     it does not unwrap. A sealed resource version is bound to its type, id
//     and version (see [ResourceAD]): moved, replayed or renamed it does not
//     open.
//   - A data key created inside a write transaction enters the shared cache
//     only after that transaction commits, so a rollback never leaves a key
//     in memory that the database does not hold.
//   - Errors and log values never hold key bytes. Secret-bearing types
//     have no String method, redact themselves in log/slog
//     ([slog.LogValuer]) and print redacted with every fmt verb
//     ([fmt.Formatter]).
//   - Every failure to decrypt is the same error ([ErrDecrypt], [ErrUnwrap],
//     [ErrWrongPassphrase]): nothing says which byte or which check failed.
//
// # What it does not promise
//
//   - Key material is not guaranteed to be wiped from memory. Buffers the
//     package owns are zeroed when it is done with them, but the expanded
//     AES key schedule inside a [crypto/cipher.AEAD] cannot be zeroed from
//     Go, the garbage collector may have copied any slice, and memory may be
//     swapped or dumped. Run the server without swap and core dumps.
//   - It does not judge passphrases; the caller enforces a minimum.
//   - It does not detect a key file or a database rolled back to an older
//     copy of itself: an older key file with an older passphrase still holds
//     the same KEK and still opens.
//   - Deleting an owner's wrapped key from the store (crypto-shredding) does
//     not remove it from a running Keyring's cache; restart, or evict it once
//     the store can delete keys.
package keyring
