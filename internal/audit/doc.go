// Package audit is ehrvault's tamper-evident audit log: every access to
// health data and every security event is one entry, the entries are the
// leaves of an RFC 6962 Merkle tree, and the server signs checkpoints of
// the tree (size and root hash) that witnesses outside it keep.
//
//	entry (canonical JSON, Entry.Encode) ──SHA-256(0x00 ‖ bytes)──▶ leaf hash
//	leaves ──RFC 6962──▶ root ──Ed25519, signed note──▶ checkpoint
//	entry ──XChaCha20-Poly1305, bound to its index──▶ audit.log
//	checkpoints ──▶ audit.checkpoints
//
// # Promises
//
//   - Append returns only once its entry is written and fsync'ed;
//     concurrent Appends share one write and one fsync. If the entry
//     cannot be written, Append fails with ErrUnavailable and the caller
//     must not go ahead (the API answers 503 and sends no data).
//   - The log is its own two files, apart from the records: the entries
//     (audit.log) and the checkpoints (audit.checkpoints), so that cutting
//     the end off one shows in the other. Both are only ever appended to,
//     by whoever holds their lock (the server, a command beside it); a
//     batch a crash interrupted was never acknowledged and is cut off at
//     the next open. There is no interface that changes or removes a
//     record. An edit of the files by other means is found by Verify,
//     which names the first entry (or checkpoint) that does not match:
//     entries are sealed under their index, their stored hashes and the
//     checkpoints' roots are recomputed, checkpoints name the one before.
//   - Entries are found (by patient, agent, resource, action, outcome,
//     time) through an index in memory, built from the entries at open
//     (a few seconds a million entries): it costs no write and holds
//     nothing on disk.
//   - The entry encoding is frozen (testdata/entry-v1.golden): a leaf
//     hash, and so an inclusion proof, stays checkable forever.
//   - Entries hold no identifying plaintext chosen by clients or patients:
//     search values are keyed hashes (Log.Hash), patients appear by the
//     pseudonym the store keys their data key by. Stored entries are
//     sealed, so the file shows only sizes and times.
//   - Checkpoints are C2SP tlog-checkpoint notes signed with a key derived
//     from the KEK; the public key (VerifierKey) may be published.
//   - Proofs are RFC 6962 inclusion and consistency proofs
//     (golang.org/x/mod/sumdb/tlog); the tests check them with the
//     independent github.com/transparency-dev/merkle, as Verify does.
//
// # Non-promises
//
//   - Entries after the newest checkpoint are not yet signed: removing
//     them from the end cannot be told from their never having been
//     written. Close signs a last checkpoint; a witness keeps the rest.
//   - Someone holding the KEK (the passphrase and the key file) can
//     rewrite the log and sign new checkpoints: only checkpoints kept
//     outside the server (witnesses) catch that.
//   - Cutting off the newest checkpoints (not entries) hides nothing but
//     cannot be told from their never having been written; the entries
//     stay, and are signed again.
package audit
