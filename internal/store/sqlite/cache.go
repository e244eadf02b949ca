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
// A write holds the keys it wrote from just before its commit until just
// after (hold, release): meanwhile reads of those keys bypass the cache
// and nothing is added for them. A read that misses takes the cache's
// epoch before it queries and adds what it found only if nothing was held
// or released since, so a version read before a commit never enters the
// cache after it.
type headCache struct {
	mu      sync.RWMutex
	max     int
	epoch   uint64
	m       map[headKey]*store.Version
	holding map[headKey]int // keys of commits in flight
}

type headKey struct{ typ, id string }

func newHeadCache(max int) *headCache {
	return &headCache{max: max, m: make(map[headKey]*store.Version, min(max, 1<<16)), holding: map[headKey]int{}}
}

// get returns a copy of the cached version of typ/id, or nil, and the
// epoch to hand to add after a miss. The copy shares Data, which nobody
// may change.
func (c *headCache) get(typ, id string) (*store.Version, uint64) {
	c.mu.RLock()
	k := headKey{typ, id}
	v, ep := c.m[k], c.epoch
	if c.holding[k] > 0 {
		v = nil
	}
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
	k := headKey{v.Type, v.ID}
	if c.epoch != ep || c.holding[k] > 0 {
		return
	}
	if _, ok := c.m[k]; !ok && len(c.m) >= c.max {
		for old := range c.m {
			delete(c.m, old)
			break
		}
	}
	cp := *v
	c.m[k] = &cp
}

// hold marks keys as being written, just before the commit that writes
// them: until release, reads of them bypass the cache.
func (c *headCache) hold(keys []headKey) {
	if len(keys) == 0 {
		return
	}
	c.mu.Lock()
	c.epoch++
	for _, k := range keys {
		c.holding[k]++
		delete(c.m, k)
	}
	c.mu.Unlock()
}

// release ends a hold, after the commit (or its failure): what a read
// took before is never added, and the next read finds the new version.
func (c *headCache) release(keys []headKey) {
	if len(keys) == 0 {
		return
	}
	c.mu.Lock()
	c.epoch++
	for _, k := range keys {
		delete(c.m, k)
		if c.holding[k]--; c.holding[k] <= 0 {
			delete(c.holding, k)
		}
	}
	c.mu.Unlock()
}
