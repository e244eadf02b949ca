package users

import (
	"sync"
	"time"
)

// Throttle settings: after throttleFree failures in a row an account must
// wait throttleBase, doubling with each further failure up to throttleCap.
// There is never a lock-out: the right password always works once the wait
// is over, so nobody can keep a doctor out for long by typing wrong
// passwords on their behalf. An account's count ends only with a full
// login (or a day without failures), so a patient guesser gets a few
// dozen tries a day at most.
//
// A source address is shared: a clinic behind one NAT address, a hospital
// proxy. Its count starts delaying only after sourceFree failures, and
// starts over once the address has gone sourceReset without a failure, so
// that colleagues' typos do not add up into a 15-minute wait for everyone.
const (
	throttleFree   = 3
	throttleBase   = time.Second
	throttleCap    = 15 * time.Minute
	throttleForget = 24 * time.Hour // a counter idle this long is forgotten
	throttleMax    = 100_000        // counters kept; past it the stalest go
	sourceFree     = 20
	sourceReset    = 15 * time.Minute
)

// isSource reports whether a throttle key counts a source address.
func isSource(k string) bool { return len(k) > 2 && k[:2] == "s:" }

// freeOf is how many failures key may have before it waits.
func freeOf(k string) int {
	if isSource(k) {
		return sourceFree
	}
	return throttleFree
}

// stale reports whether c, of key k, has been idle long enough to forget.
func stale(k string, c *counter, now time.Time) bool {
	idle := now.Sub(c.last)
	return idle > throttleForget || isSource(k) && idle > sourceReset && !now.Before(c.until)
}

// throttle counts failed logins in memory, per key ("a:" + account
// lookup, "s:" + source address).
type throttle struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]*counter
}

type counter struct {
	failures int
	until    time.Time // no attempt before this
	last     time.Time
}

func newThrottle(now func() time.Time) *throttle {
	return &throttle{now: now, m: map[string]*counter{}}
}

// wait returns how long the caller must still wait before an attempt on
// any of keys; 0 if none.
func (t *throttle) wait(keys ...string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	var d time.Duration
	for _, k := range keys {
		c := t.m[k]
		if c == nil {
			continue
		}
		if stale(k, c, now) {
			delete(t.m, k)
			continue
		}
		if w := c.until.Sub(now); w > d {
			d = w
		}
	}
	return d
}

// delay is an account's wait after n failures.
func delay(n int) time.Duration { return delayAfter(n, throttleFree) }

// delayAfter is the wait after n failures when free are free.
func delayAfter(n, free int) time.Duration {
	if n < free {
		return 0
	}
	d := throttleBase
	for i := free; i < n && d < throttleCap; i++ {
		d *= 2
	}
	return min(d, throttleCap)
}

// fail counts a failure against each of keys.
func (t *throttle) fail(keys ...string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	for _, k := range keys {
		c := t.m[k]
		if c != nil && stale(k, c, now) {
			c = nil
		}
		if c == nil {
			if len(t.m) >= throttleMax {
				t.evict(now)
			}
			c = &counter{}
			t.m[k] = c
		}
		c.failures++
		c.last = now
		c.until = now.Add(delayAfter(c.failures, freeOf(k)))
	}
}

// succeed forgets key's failures (an account's, after a full login).
func (t *throttle) succeed(key string) {
	t.mu.Lock()
	delete(t.m, key)
	t.mu.Unlock()
}

// evict drops forgotten counters, and if none were, the stalest tenth.
func (t *throttle) evict(now time.Time) {
	for k, c := range t.m {
		if stale(k, c, now) || !now.Before(c.until) && c.failures < freeOf(k) {
			delete(t.m, k)
		}
	}
	if len(t.m) < throttleMax {
		return
	}
	var oldest time.Time
	for _, c := range t.m {
		if oldest.IsZero() || c.last.Before(oldest) {
			oldest = c.last
		}
	}
	cut := oldest.Add(now.Sub(oldest) / 10)
	for k, c := range t.m {
		if !c.last.After(cut) {
			delete(t.m, k)
		}
	}
}
