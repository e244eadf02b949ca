package synth

import "math/rand/v2"

// uuid is a UUID in its 36-character text form, kept as bytes so that it is
// appended to output without formatting or allocation.
type uuid [36]byte

func (u uuid) String() string { return string(u[:]) }

// mix is the SplitMix64 finalizer (Steele, Lea, Flood: "Fast splittable
// pseudorandom number generators", 2014): a bijection on 64 bits whose
// outputs for nearby inputs look unrelated.
func mix(z uint64) uint64 {
	z ^= z >> 30
	z *= 0xbf58476d1ce4e5b9
	z ^= z >> 27
	z *= 0x94d049bb133111eb
	z ^= z >> 31
	return z
}

const golden = 0x9e3779b97f4a7c15 // 2^64 / φ, the SplitMix64 increment

// Domains. Every value the generator derives is keyed by the seed, a domain
// and a number within the domain, so that patients, the shared resources
// and the identifier permutations never draw from one another.
const (
	domainShared       = 1 // UUIDs of the shared resources
	domainSharedRandom = 2 // random choices for the shared resources
	domainPatient      = 3 // UUIDs of patient n
	domainRandom       = 4 // random choices for patient n
	domainSSN          = 5
	domainMRN          = 6
	domainMember       = 7
	domainNPI          = 8
)

// keys returns two 64-bit keys for number n of a domain under seed.
func keys(seed, domain, n uint64) (uint64, uint64) {
	k0 := mix(mix(seed+domain*golden) ^ mix(n+golden))
	k1 := mix(k0 ^ 0x6a09e667f3bcc909)
	return k0, k1
}

// newRand returns the math/rand/v2 generator for number n of a domain,
// a PCG whose state comes from keys.
func newRand(seed, domain, n uint64) *rand.Rand {
	return rand.New(rand.NewPCG(keys(seed, domain, n)))
}

// makeUUID returns the n-th UUID of the stream keyed by k0 and k1: 122 bits
// of hash output with the version-4 and RFC 9562 variant bits set, written
// in lowercase hex. Distinct (keys, n) collide with the probability of
// random version-4 UUIDs.
func makeUUID(k0, k1, n uint64) uuid {
	hi := mix(k0 + (n+1)*golden)
	lo := mix(k1 ^ mix(n+0x3c6ef372fe94f82b))
	hi = hi&^0xf000 | 0x4000 // version 4: the high nibble of octet 6
	lo = lo&^(3<<62) | 1<<63 // variant 10: the top bits of octet 8
	const hex = "0123456789abcdef"
	var u uuid
	j := 0
	for i := 0; i < 16; i++ {
		var c byte
		if i < 8 {
			c = byte(hi >> (56 - 8*i))
		} else {
			c = byte(lo >> (56 - 8*(i-8)))
		}
		if i == 4 || i == 6 || i == 8 || i == 10 {
			u[j] = '-'
			j++
		}
		u[j] = hex[c>>4]
		u[j+1] = hex[c&0xf]
		j += 2
	}
	return u
}

// permute maps n in [0, m) to [0, m) one to one: an affine map whose
// multiplier shares no factor with m (m is a power of ten here, so the
// multiplier is odd and not a multiple of 5), offset by a value of the seed.
// It makes identifiers that look unrelated for consecutive patients yet
// never repeat below m. m must be at most 10^9 so that nothing overflows.
func permute(seed, domain, n, m uint64) uint64 {
	k, _ := keys(seed, domain, 0)
	const a = 387_420_489 // 3^18: prime to every power of ten
	return (n%m*(a%m) + k%m) % m
}
