package sqlite

import (
	"sync"

	"github.com/ehrvault/ehrvault/internal/store"
)

// headCache keeps the current versions of recently read resources in
// memory, as the sealed bytes the database holds: a read that hits it
// costs a map lookup instead of a query. It is correct only while this
// process is the database's only writer (see Options.ReadCache): writes
// through Update invalidate what they touch before Update returns.
//
// A read that misses takes the cache's epoch before it queries and adds
// what it found only if no write invalidated anything since, so a version
// read just before a commit never enters the cache after it.
type headCache struct {
	mu    sync.RWMutex
	max   int
	epoch uint64
	m     map[headKey]*store.Version
}

type headKey struct{ typ, id string }

func newHeadCache(max int) *headCache {
	return &headCache{max: max, m: make(map[headKey]*store.Version, min(max, 1<<16))}
}

// get returns a copy of the cached version of typ/id, or nil, and the
// epoch to hand to add after a miss. The copy shares Data, which nobody
// may change.
func (c *headCache) get(typ, id string) (*store.Version, uint64) {
	c.mu.RLock()
	v, ep := c.m[headKey{typ, id}], c.epoch
	c.mu.RUnlock()
	if v == nil {
		return nil, ep
	}
	cp := *v
	return &cp, ep
}

// add caches v, read from the database at epoch ep, unless a write has
// invalidated anything since. A full cache drops an arbitrary entry.
func (c *headCache) add(v *store.Version, ep uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch != ep {
		return
	}
	k := headKey{v.Type, v.ID}
	if _, ok := c.m[k]; !ok && len(c.m) >= c.max {
		for old := range c.m {
			delete(c.m, old)
			break
		}
	}
	cp := *v
	c.m[k] = &cp
}

// invalidate forgets the versions of keys, after a commit that wrote them.
func (c *headCache) invalidate(keys []headKey) {
	if len(keys) == 0 {
		return
	}
	c.mu.Lock()
	c.epoch++
	for _, k := range keys {
		delete(c.m, k)
	}
	c.mu.Unlock()
}
