package edge

import (
	"container/list"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Rate is a token bucket: PerSecond requests a second on average, Burst
// at once. A zero Rate means no limit.
type Rate struct {
	PerSecond float64
	Burst     int
}

// DefaultMaxKeys bounds the buckets a Limiter keeps per kind of key.
const DefaultMaxKeys = 10000

// LimiterConfig configures NewLimiter.
type LimiterConfig struct {
	Address   Rate // per source address (IPv6: per /64)
	Principal Rate // per authenticated principal id
	// MaxKeys bounds the buckets of each kind; past it the least recently
	// used is forgotten (default DefaultMaxKeys).
	MaxKeys int
	// Proxies are trusted to set X-Forwarded-For (see Proxies.Source).
	Proxies Proxies
	Now     func() time.Time // default time.Now
}

// Limiter limits requests per source address (Middleware) and per
// principal (AllowPrincipal). It is safe for concurrent use.
type Limiter struct {
	cfg       LimiterConfig
	addr      *buckets
	principal *buckets
}

// NewLimiter returns a limiter.
func NewLimiter(cfg LimiterConfig) *Limiter {
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = DefaultMaxKeys
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Limiter{cfg: cfg, addr: newBuckets(cfg.Address, cfg.MaxKeys), principal: newBuckets(cfg.Principal, cfg.MaxKeys)}
}

// Middleware answers 429 with Retry-After to a source address past its
// rate, and passes other requests to next.
func (l *Limiter) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if wait, ok := l.AllowAddress(l.cfg.Proxies.Source(r)); !ok {
			TooManyRequests(w, wait, "source address")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// AllowAddress takes a token for a source address, and says whether
// there was one and, if not, how long until there is.
func (l *Limiter) AllowAddress(a netip.Addr) (time.Duration, bool) {
	return l.addr.take(addrKey(a), l.cfg.Now())
}

// AllowPrincipal takes a token for a principal id, and says whether there
// was one and, if not, how long until there is. Call it once a request
// has been authenticated.
func (l *Limiter) AllowPrincipal(id string) (time.Duration, bool) {
	return l.principal.take(id, l.cfg.Now())
}

// LimitPrincipal is AllowPrincipal that answers 429 itself: it returns
// false if it did, and the request must end there.
func (l *Limiter) LimitPrincipal(w http.ResponseWriter, id string) bool {
	wait, ok := l.AllowPrincipal(id)
	if !ok {
		TooManyRequests(w, wait, "principal")
	}
	return ok
}

// TooManyRequests answers 429 with Retry-After: wait, in whole seconds,
// at least 1.
func TooManyRequests(w http.ResponseWriter, wait time.Duration, what string) {
	secs := int64(math.Ceil(wait.Seconds()))
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	WriteError(w, http.StatusTooManyRequests, "throttled", "too many requests from this "+what+"; retry after "+strconv.FormatInt(secs, 10)+" s")
}

// addrKey keys an address: IPv4 whole, IPv6 by its /64.
func addrKey(a netip.Addr) string {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// buckets are token buckets by key, the least recently used first to go.
type buckets struct {
	rate Rate
	max  int
	mu   sync.Mutex
	m    map[string]*list.Element // of *bucket
	lru  *list.List               // front: most recently used
}

type bucket struct {
	key string
	lim *rate.Limiter
}

func newBuckets(r Rate, max int) *buckets {
	return &buckets{rate: r, max: max, m: map[string]*list.Element{}, lru: list.New()}
}

func (b *buckets) take(key string, now time.Time) (time.Duration, bool) {
	if b.rate.PerSecond <= 0 {
		return 0, true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var lim *rate.Limiter
	if e, ok := b.m[key]; ok {
		b.lru.MoveToFront(e)
		lim = e.Value.(*bucket).lim
	} else {
		if b.lru.Len() >= b.max {
			old := b.lru.Back()
			b.lru.Remove(old)
			delete(b.m, old.Value.(*bucket).key)
		}
		burst := max(b.rate.Burst, 1)
		lim = rate.NewLimiter(rate.Limit(b.rate.PerSecond), burst)
		b.m[key] = b.lru.PushFront(&bucket{key: key, lim: lim})
	}
	res := lim.ReserveN(now, 1)
	if !res.OK() {
		return time.Second, false
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now) // the request is refused: give the token back
		return d, false
	}
	return 0, true
}

// len returns how many buckets are kept.
func (b *buckets) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.m)
}
