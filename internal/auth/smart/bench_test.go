package smart

import (
	"net/url"
	"testing"
)

// BenchmarkAuthenticate is the cost a FHIR request pays for its token: a
// DPoP proof verified (ES256) and the token's record from the cache
// (sub-benchmark "cached") or from the store (CacheTTL passed: "store").
func BenchmarkAuthenticate(b *testing.B) {
	for _, name := range []string{"cached", "store"} {
		b.Run(name, func(b *testing.B) {
			e := newEnv(b)
			code, v := e.code()
			a := e.exchange(code, v, e.dkey)
			const path = "/fhir/Observation"
			reqs := make([]*httptest_req, b.N)
			for i := range reqs {
				reqs[i] = req("GET", path, "DPoP", a.AccessToken, e.dkey.Proof("GET", issuer+path, a.AccessToken, e.clock()))
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if name == "store" {
					e.srv.forget()
				}
				if _, err := e.srv.Authenticate(reqs[i].Request); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkClientCredentials is a backend service's token request:
// assertion (ES384) and proof verified, jti and token stored.
func BenchmarkClientCredentials(b *testing.B) {
	e := newEnv(b)
	forms := make([]url.Values, b.N)
	for i := range forms {
		forms[i] = url.Values{"grant_type": {"client_credentials"}, "scope": {"system/Observation.rs"},
			"client_assertion_type": {assertionType}, "client_assertion": {e.assertion(e.svc, e.svcKey, nil)}}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if a := e.token(forms[i], e.dkey); a.status != 200 {
			b.Fatal(a.Error)
		}
	}
}
