package records

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
)

// A page cursor continues a listing (history, search) where the previous
// page ended. It is opaque to clients and tamper-proof: the position is
// followed by an HMAC-SHA256 tag, under a key derived from the KEK, over
// the position and the scope (the canonical form of the query it belongs
// to), so a cursor cannot be altered or moved to another query.
//
//	cursor = base64url( version(1) || position || tag(16) )
//
// The position is not encrypted: it is a store sequence number or a
// resource id, both of which carry no health data.
type cursorCodec struct {
	key []byte
}

const cursorVersion = 1

func newCursorCodec(key []byte) *cursorCodec { return &cursorCodec{key: key} }

// errBadCursor is returned for any cursor that does not verify.
var errBadCursor = errors.New("invalid page cursor")

func (c *cursorCodec) tag(scope string, body []byte) []byte {
	m := hmac.New(sha256.New, c.key)
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(scope)))
	m.Write(n[:])
	m.Write([]byte(scope))
	m.Write(body)
	return m.Sum(nil)[:16]
}

// encode returns the cursor for position within scope.
func (c *cursorCodec) encode(scope string, position []byte) string {
	body := append([]byte{cursorVersion}, position...)
	return base64.RawURLEncoding.EncodeToString(append(body, c.tag(scope, body)...))
}

// decode returns the position of a cursor made for scope.
func (c *cursorCodec) decode(scope, cursor string) ([]byte, error) {
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil || len(raw) < 1+16 || raw[0] != cursorVersion {
		return nil, errBadCursor
	}
	body, tag := raw[:len(raw)-16], raw[len(raw)-16:]
	if !hmac.Equal(tag, c.tag(scope, body)) {
		return nil, errBadCursor
	}
	return body[1:], nil
}

func (c *cursorCodec) encodeSeq(scope string, seq int64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(seq))
	return c.encode(scope, b[:])
}

func (c *cursorCodec) decodeSeq(scope, cursor string) (int64, error) {
	p, err := c.decode(scope, cursor)
	if err != nil || len(p) != 8 {
		return 0, errBadCursor
	}
	return int64(binary.BigEndian.Uint64(p)), nil
}
