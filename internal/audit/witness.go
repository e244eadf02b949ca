package audit

import (
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
)

// ErrForked says a log showed a witness two checkpoints that cannot both
// be true: it rewrote entries, or shows different people different logs.
var ErrForked = errors.New("audit: the log is not append-only")

// CheckAppendOnly decides whether next may follow prev, a checkpoint a
// witness already holds, given a consistency proof from prev's size to
// next's (empty when the sizes are equal). Both checkpoints must already
// be verified against the log's key. An error wraps ErrForked when the log
// was rewritten, shrank or forked.
func CheckAppendOnly(prev, next *Checkpoint, proof []tlog.Hash) error {
	switch {
	case next.Origin != prev.Origin:
		return fmt.Errorf("%w: the new checkpoint names another log (%q, not %q)", ErrForked, next.Origin, prev.Origin)
	case next.Size < prev.Size:
		return fmt.Errorf("%w: the log shrank from %d to %d entries", ErrForked, prev.Size, next.Size)
	case next.Size == prev.Size:
		if next.Root != prev.Root {
			return fmt.Errorf("%w: two different roots for the same size %d", ErrForked, next.Size)
		}
		return nil
	}
	if err := tlog.CheckTree(proof, next.Size, next.Root, prev.Size, prev.Root); err != nil {
		return fmt.Errorf("%w: the tree of %d entries is not a prefix of the tree of %d: %v", ErrForked, prev.Size, next.Size, err)
	}
	return nil
}
