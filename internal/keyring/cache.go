package keyring

import (
	"sync"
	"sync/atomic"
)

// keyCache holds up to max unwrapped data keys, found by id (the read path)
// or by owner (the write path).
//
// Reads are hot (every resource read asks for its key), so a hit takes no
// lock: both indexes are sync.Maps, whose loads do not write shared memory,
// and recency is one atomic flag per entry, written only when it changes.
// Eviction is therefore not exact LRU but CLOCK (second chance), the usual
// approximation: entries sit in a ring; a hit sets the entry's flag; to make
// room the hand sweeps the ring, clearing set flags, and evicts the first
// entry whose flag is clear, i.e. one not used since the hand last passed.
// A new entry starts clear and behind the hand, so it gets a full turn.
// Inserts and evictions take mu.
//
// Evicting an entry drops the cache's reference to its DataKey, which holds
// no raw key bytes to zero (see DataKey.aead); callers that still hold the
// DataKey can go on using it.
type keyCache struct {
	max int

	byID    sync.Map // int64 → *cacheEntry
	byOwner sync.Map // string → *cacheEntry

	mu   sync.Mutex // guards ring, hand and every write to byID and byOwner
	ring []*cacheEntry
	hand int
}

type cacheEntry struct {
	key  *DataKey
	used atomic.Bool
	slot int // index in ring; guarded by keyCache.mu
}

func newKeyCache(max int) *keyCache {
	if max < 1 {
		max = 1
	}
	return &keyCache{max: max, ring: make([]*cacheEntry, 0, min(max, 1024))}
}

// byIDKey returns the cached key with id, or nil.
func (c *keyCache) byIDKey(id int64) *DataKey {
	v, ok := c.byID.Load(id)
	if !ok {
		return nil
	}
	return c.touch(v.(*cacheEntry))
}

// byOwnerKey returns the cached key of owner, or nil.
func (c *keyCache) byOwnerKey(owner string) *DataKey {
	v, ok := c.byOwner.Load(owner)
	if !ok {
		return nil
	}
	return c.touch(v.(*cacheEntry))
}

func (c *keyCache) touch(e *cacheEntry) *DataKey {
	if !e.used.Load() { // no write, so no cache-line traffic, on a hot key
		e.used.Store(true)
	}
	return e.key
}

// add caches k, evicting the least recently used entry if the cache is
// full. If the cache holds k's id already it keeps that entry; if it holds
// another key of k's owner (the owner's key was replaced) it drops that one.
func (c *keyCache) add(k *DataKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.byID.Load(k.id); ok {
		return
	}
	if v, ok := c.byOwner.Load(k.owner); ok {
		c.removeLocked(v.(*cacheEntry))
	}
	e := &cacheEntry{key: k}
	if len(c.ring) < c.max {
		e.slot = len(c.ring)
		c.ring = append(c.ring, e)
	} else {
		victim := c.victimLocked()
		c.byID.Delete(victim.key.id)
		c.byOwner.Delete(victim.key.owner)
		e.slot = victim.slot
		c.ring[e.slot] = e
		c.hand = (e.slot + 1) % len(c.ring)
	}
	c.byID.Store(k.id, e)
	c.byOwner.Store(k.owner, e)
}

// victimLocked advances the hand to the first entry not used since the hand
// last passed it. It ends within two turns: the first clears every flag.
func (c *keyCache) victimLocked() *cacheEntry {
	for {
		e := c.ring[c.hand]
		if !e.used.Load() {
			return e
		}
		e.used.Store(false)
		c.hand = (c.hand + 1) % len(c.ring)
	}
}

// removeLocked drops e from the indexes and the ring.
func (c *keyCache) removeLocked(e *cacheEntry) {
	c.byID.Delete(e.key.id)
	c.byOwner.Delete(e.key.owner)
	last := len(c.ring) - 1
	moved := c.ring[last]
	c.ring[e.slot] = moved
	moved.slot = e.slot
	c.ring[last] = nil
	c.ring = c.ring[:last]
	if c.hand >= len(c.ring) {
		c.hand = 0
	}
}

// len returns the number of cached keys.
func (c *keyCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.ring)
}

// clear drops every key.
func (c *keyCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.ring {
		c.byID.Delete(e.key.id)
		c.byOwner.Delete(e.key.owner)
	}
	clear(c.ring)
	c.ring = c.ring[:0]
	c.hand = 0
}
