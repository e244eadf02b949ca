package audit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"golang.org/x/mod/sumdb/tlog"
)

// The audit log file is a header and then records, each
//
//	kind (1 byte) ‖ length of the payload (4 bytes, big-endian) ‖ payload
//
// of three kinds:
//
//	'H'  the header, first and once: "ehrvault audit log v1\n" origin "\n"
//	     verifier key "\n"
//	'E'  an entry: index (8 bytes, big-endian) ‖ number of hashes k
//	     (1 byte) ‖ the k tree hashes the entry completes (32 bytes each,
//	     tlog.StoredHashes: its leaf hash, then one per level it closes) ‖
//	     the sealed entry (keyring.Sealer, bound to the index)
//	'C'  a signed checkpoint (a signed note)
//
// Records are only ever appended, in batches: one write and one fsync.
// A batch cut short by a crash leaves an incomplete last record, which was
// never acknowledged; it is cut off when the log next opens.
const (
	kindHeader     = 'H'
	kindEntry      = 'E'
	kindCheckpoint = 'C'

	recordHead = 5 // kind and length
	// entryHead is the part of an entry's payload before its hashes.
	entryHead = 9
	// maxRecord bounds one record (an entry lists every resource a search
	// returned, so it can be long, but not this long).
	maxRecord = 64 << 20
)

const headerMagic = "ehrvault audit log v1\n"

// errTorn marks a last record that the file ends in the middle of.
var errTorn = errors.New("the log ends in the middle of a record")

// record is one parsed record.
type record struct {
	kind    byte
	off     int64 // offset of the record in the file
	size    int64 // whole record, head included
	payload []byte
}

// readRecord reads the record at off from r (an io.ReaderAt over size
// bytes). It returns errTorn for a record that runs past size, io.EOF at
// size.
func readRecord(r io.ReaderAt, off, size int64, buf []byte) (record, []byte, error) {
	if off == size {
		return record{}, buf, io.EOF
	}
	if size-off < recordHead {
		return record{}, buf, errTorn
	}
	var head [recordHead]byte
	if _, err := r.ReadAt(head[:], off); err != nil {
		return record{}, buf, err
	}
	n := int64(binary.BigEndian.Uint32(head[1:]))
	switch head[0] {
	case kindHeader, kindEntry, kindCheckpoint:
	default:
		return record{}, buf, fmt.Errorf("no record starts at byte %d (kind %#x): the file was altered or damaged", off, head[0])
	}
	if n > maxRecord {
		return record{}, buf, fmt.Errorf("the record at byte %d claims %d bytes: the file was altered or damaged", off, n)
	}
	if size-off-recordHead < n {
		return record{}, buf, errTorn
	}
	if int64(cap(buf)) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := r.ReadAt(buf, off+recordHead); err != nil {
		return record{}, buf, err
	}
	return record{kind: head[0], off: off, size: recordHead + n, payload: buf}, buf, nil
}

// appendRecord appends a record to b.
func appendRecord(b []byte, kind byte, payload ...[]byte) []byte {
	n := 0
	for _, p := range payload {
		n += len(p)
	}
	b = append(b, kind)
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	for _, p := range payload {
		b = append(b, p...)
	}
	return b
}

// headerPayload is the payload of the header record.
func headerPayload(origin, vkey string) []byte {
	return []byte(headerMagic + origin + "\n" + vkey + "\n")
}

// parseHeader reads a header record's payload.
func parseHeader(p []byte) (origin, vkey string, err error) {
	s, ok := strings.CutPrefix(string(p), headerMagic)
	if !ok {
		return "", "", errors.New("not an ehrvault audit log (or a version this ehrvault does not know)")
	}
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	if len(lines) != 2 {
		return "", "", errors.New("the audit log's header is damaged")
	}
	return lines[0], lines[1], nil
}

// entryPayload returns the parts of entry i's payload.
func entryPayload(i int64, hashes []tlog.Hash, sealed []byte) [][]byte {
	head := make([]byte, entryHead, entryHead+len(hashes)*tlog.HashSize)
	binary.BigEndian.PutUint64(head, uint64(i))
	head[8] = byte(len(hashes))
	for _, h := range hashes {
		head = append(head, h[:]...)
	}
	return [][]byte{head, sealed}
}

// parsedEntry is an entry record's payload, split.
type parsedEntry struct {
	index  int64
	hashes []byte // k*32 bytes
	sealed []byte
}

func parseEntry(p []byte) (parsedEntry, error) {
	if len(p) < entryHead {
		return parsedEntry{}, errors.New("an entry record too short to hold an index")
	}
	k := int(p[8])
	if len(p) < entryHead+k*tlog.HashSize {
		return parsedEntry{}, errors.New("an entry record too short for its hashes")
	}
	return parsedEntry{
		index:  int64(binary.BigEndian.Uint64(p)),
		hashes: p[entryHead : entryHead+k*tlog.HashSize],
		sealed: p[entryHead+k*tlog.HashSize:],
	}, nil
}
