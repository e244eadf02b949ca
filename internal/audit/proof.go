package audit

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
)

// InclusionProof proves that the entry at Index is in the tree of Size
// entries whose root is Root (RFC 6962, section 2.1.1): hash the entry's
// canonical bytes as a leaf (SHA-256 of 0x00 ‖ bytes) and combine it with
// Hashes, bottom up.
type InclusionProof struct {
	Index, Size int64
	Leaf        tlog.Hash // the entry's leaf hash
	Root        tlog.Hash
	Hashes      []tlog.Hash
}

// ConsistencyProof proves that the tree of From entries is a prefix of the
// tree of To entries (RFC 6962, section 2.1.2).
type ConsistencyProof struct {
	From, To         int64
	FromRoot, ToRoot tlog.Hash
	Hashes           []tlog.Hash
}

// ErrRange is returned for proofs of sizes or indexes the log does not
// have.
var ErrRange = errors.New("audit: no such index or size in the log")

// ProveInclusion proves entry index in the tree of size entries (the
// newest checkpoint's size when size is 0).
func (l *Log) ProveInclusion(ctx context.Context, index, size int64) (*InclusionProof, error) {
	size, err := l.sizeOrLatest(ctx, size)
	if err != nil {
		return nil, err
	}
	if index < 0 || index >= size {
		return nil, fmt.Errorf("%w: entry %d is not in a tree of %d entries", ErrRange, index, size)
	}
	hr := &hashReader{l: l}
	p, err := tlog.ProveRecord(size, index, hr)
	if err != nil {
		return nil, err
	}
	root, err := tlog.TreeHash(size, hr)
	if err != nil {
		return nil, err
	}
	leaf, err := hr.ReadHashes([]int64{tlog.StoredHashIndex(0, index)})
	if err != nil {
		return nil, err
	}
	return &InclusionProof{Index: index, Size: size, Leaf: leaf[0], Root: root, Hashes: p}, nil
}

// ProveConsistency proves the tree of from entries a prefix of the tree of
// to entries (the newest checkpoint's size when to is 0).
func (l *Log) ProveConsistency(ctx context.Context, from, to int64) (*ConsistencyProof, error) {
	to, err := l.sizeOrLatest(ctx, to)
	if err != nil {
		return nil, err
	}
	if from < 1 || from > to {
		return nil, fmt.Errorf("%w: a consistency proof needs 1 <= from <= to (%d, %d)", ErrRange, from, to)
	}
	hr := &hashReader{l: l}
	p, err := tlog.ProveTree(to, from, hr)
	if err != nil {
		return nil, err
	}
	fr, err := tlog.TreeHash(from, hr)
	if err != nil {
		return nil, err
	}
	tr, err := tlog.TreeHash(to, hr)
	if err != nil {
		return nil, err
	}
	return &ConsistencyProof{From: from, To: to, FromRoot: fr, ToRoot: tr, Hashes: p}, nil
}

// sizeOrLatest returns size, or the newest checkpoint's size for 0, after
// checking that the log has that many entries.
func (l *Log) sizeOrLatest(ctx context.Context, size int64) (int64, error) {
	if size == 0 {
		cp, err := l.Latest(ctx)
		if err != nil {
			return 0, err
		}
		if cp == nil {
			return 0, fmt.Errorf("%w: no checkpoint has been signed yet", ErrRange)
		}
		return cp.Size, nil
	}
	n, err := l.Size(ctx)
	if err != nil {
		return 0, err
	}
	if size < 0 || size > n {
		return 0, fmt.Errorf("%w: the log has %d entries, not %d", ErrRange, n, size)
	}
	return size, nil
}

// Check verifies an inclusion proof against its root (tlog.CheckRecord).
func (p *InclusionProof) Check() error {
	return tlog.CheckRecord(p.Hashes, p.Size, p.Root, p.Index, p.Leaf)
}

// Check verifies a consistency proof against its roots (tlog.CheckTree).
func (p *ConsistencyProof) Check() error {
	return tlog.CheckTree(p.Hashes, p.To, p.ToRoot, p.From, p.FromRoot)
}
