package keyring

import (
	"context"
	"errors"
)

// Errors of this package. Callers test them with errors.Is. None of them
// says why a decryption failed: that would help an attacker, and an operator
// learns nothing more from it.
var (
	// ErrWrongPassphrase: the key file did not unseal. Either the passphrase
	// is wrong or the file was damaged or tampered with; nobody can tell
	// which. The CLI asks for the passphrase again or for the backup.
	ErrWrongPassphrase = errors.New("keyring: cannot unseal: wrong passphrase or damaged key file")
	// ErrKeyFileExists: CreateKeyFile found a file at its path and left it
	// alone. A key file is never overwritten: that would lose the data.
	ErrKeyFileExists = errors.New("keyring: key file already exists")
	// ErrUnwrap: a wrapped data key did not unwrap: damaged, moved to
	// another owner's row, or wrapped under another KEK. Data sealed under
	// it cannot be read; the API answers 500 and logs the key id.
	ErrUnwrap = errors.New("keyring: cannot unwrap data key")
	// ErrDecrypt: sealed data did not open: damaged, moved to another
	// resource, type or version, or sealed under another key. Never served.
	ErrDecrypt = errors.New("keyring: cannot decrypt")
	// ErrClosed: the provider was used after Close.
	ErrClosed = errors.New("keyring: key provider closed")
)

// Provider holds the key-encryption key (KEK). The local provider is a
// passphrase-sealed key file ([FileProvider]); a cloud KMS or Vault Transit
// provider can take its place without the rest of ehrvault noticing.
//
// A Provider is safe for concurrent use.
type Provider interface {
	// Wrap seals plaintext (a data key) under the KEK, binding ad: Unwrap
	// with any other ad fails. The result is opaque and safe to store.
	Wrap(ctx context.Context, plaintext, ad []byte) ([]byte, error)
	// Unwrap opens what Wrap returned with the same ad. Any failure to
	// authenticate is ErrUnwrap; a provider that cannot be reached (a KMS)
	// returns its own error.
	Unwrap(ctx context.Context, wrapped, ad []byte) ([]byte, error)
	// Derive returns a 32-byte key derived from the KEK for purpose, the
	// same for the same KEK and purpose, independent across purposes. It is
	// never stored. The local provider uses HKDF-SHA256 (RFC 5869) with
	// info "ehrvault/v1/"+purpose.
	Derive(ctx context.Context, purpose string) ([]byte, error)
	// Describe says what the provider is, for logs and the posture check,
	// e.g. "local key file (argon2id)". It holds no secret.
	Describe() string
}
