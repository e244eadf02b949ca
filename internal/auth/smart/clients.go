package smart

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/ehrvault/ehrvault/internal/auth"
	"github.com/ehrvault/ehrvault/internal/keyring"
	"github.com/ehrvault/ehrvault/internal/store"
)

// Kinds of client.
const (
	ClientApp     = "app"     // a SMART app: authorization code + PKCE, acting for a person
	ClientService = "service" // a SMART backend service: client_credentials + private_key_jwt
	ClientDevice  = "device"  // a connected medical device: like a service, write-only scopes
)

// kindClient is the store kind of client records.
const kindClient = "smart.client"

// ErrNoClient is returned for an unknown client id.
var ErrNoClient = errors.New("smart: no such client")

// Client is a registered SMART client.
type Client struct {
	ID           string    `json:"id"`
	Kind         string    `json:"kind"`                    // ClientApp, ClientService or ClientDevice
	Name         string    `json:"name"`                    // what the operator calls it; shown on the consent page
	RedirectURIs []string  `json:"redirect_uris,omitempty"` // apps: matched exactly
	Scopes       []string  `json:"scopes"`                  // what it may be granted at most
	JWKS         []byte    `json:"jwks,omitempty"`          // services, devices (and confidential apps): public JWK Set JSON
	Patients     []string  `json:"patients,omitempty"`      // devices: the patients it may write for
	Created      time.Time `json:"created"`
}

// Allowed returns the client's allowed scopes, parsed. An app may always
// be granted openid and fhirUser, registered or not: they grant no data,
// only an id_token saying who the user is, to the app the user consented
// to. Services and devices act for nobody and never get them.
func (c *Client) Allowed() Scopes {
	ss, _ := ParseScopes(strings.Join(c.Scopes, " ")) // checked by Add
	if c.Kind == ClientApp {
		for _, n := range []string{ScopeOpenID, ScopeFHIRUser} {
			if !ss.Contains(n) {
				ss = append(ss, Scope{Name: n})
			}
		}
	}
	return ss
}

// PrincipalKind is the auth.Principal Kind of the client's own tokens
// (apps act for people: auth.KindUser).
func (c *Client) PrincipalKind() string {
	switch c.Kind {
	case ClientService:
		return auth.KindService
	case ClientDevice:
		return auth.KindDevice
	}
	return auth.KindUser
}

// keys returns the client's public key set.
func (c *Client) keys() (*jose.JSONWebKeySet, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(c.JWKS, &set); err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	return &set, nil
}

// Clients is the registry of SMART clients, kept sealed in the store.
type Clients struct {
	store store.AuthObjects
	seal  *keyring.Sealer
	now   func() time.Time
}

// NewClients returns the registry; seal is the identity layer's Sealer
// (keyring.PurposeAuthSeal). now may be nil.
func NewClients(st store.AuthObjects, seal *keyring.Sealer, now func() time.Time) *Clients {
	if now == nil {
		now = time.Now
	}
	return &Clients{store: st, seal: seal, now: now}
}

var nameRE = regexp.MustCompile(`^[\p{L}\p{N} ._()'-]{1,80}$`)

// Validate checks a client before it is registered; the error names the
// field at fault.
func (c *Client) Validate() error {
	if !nameRE.MatchString(c.Name) {
		return errors.New("name: 1 to 80 letters, digits, spaces or ._()'-")
	}
	scopes, err := ParseScopes(strings.Join(c.Scopes, " "))
	if err != nil {
		return fmt.Errorf("scopes: %w", err)
	}
	var resources int
	for _, s := range scopes {
		if s.IsResource() {
			resources++
		}
	}
	if resources == 0 {
		return errors.New("scopes: name at least one resource scope (e.g. patient/Observation.rs)")
	}
	switch c.Kind {
	case ClientApp:
		if len(c.RedirectURIs) == 0 {
			return errors.New("redirect_uris: an app needs at least one")
		}
		for _, u := range c.RedirectURIs {
			if err := validRedirect(u); err != nil {
				return fmt.Errorf("redirect_uris: %q: %w", u, err)
			}
		}
		if scopes.HasContext(ContextSystem) {
			return errors.New("scopes: system/ scopes are for services and devices, not apps")
		}
		if len(c.Patients) > 0 {
			return errors.New("patients: only devices are assigned patients")
		}
	case ClientService, ClientDevice:
		if len(c.RedirectURIs) > 0 {
			return errors.New("redirect_uris: only apps have them")
		}
		for _, s := range scopes {
			if s.IsResource() && s.Context != ContextSystem || !s.IsResource() {
				return fmt.Errorf("scopes: %q: a %s may only have system/ scopes", s, c.Kind)
			}
			if c.Kind == ClientDevice && (s.Type == "*" || strings.Trim(s.Perms, "cu") != "") {
				// Devices write for their patients and read nothing: not
				// even a search, which would reveal what exists.
				return fmt.Errorf("scopes: %q: a device may only have write-only scopes on named types (e.g. system/Observation.c)", s)
			}
		}
		if c.Kind == ClientService && len(c.Patients) > 0 {
			return errors.New("patients: only devices are assigned patients")
		}
		if c.Kind == ClientDevice && len(c.Patients) == 0 {
			return errors.New("patients: a device needs at least one assigned patient")
		}
		for _, p := range c.Patients {
			if !fhirID.MatchString(p) {
				return fmt.Errorf("patients: %q is not a FHIR id", p)
			}
		}
		if len(c.JWKS) == 0 {
			return fmt.Errorf("jwks: a %s authenticates with a key: give its public JWK Set", c.Kind)
		}
	default:
		return fmt.Errorf("kind: %q is not app, service or device", c.Kind)
	}
	if len(c.JWKS) > 0 {
		set, err := c.keys()
		if err != nil {
			return err
		}
		if len(set.Keys) == 0 {
			return errors.New("jwks: no keys")
		}
		for i, k := range set.Keys {
			if !k.Valid() || !k.IsPublic() {
				return fmt.Errorf("jwks: key %d is not a valid public key (private or symmetric keys are refused)", i)
			}
		}
	}
	return nil
}

var fhirID = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)

func validRedirect(s string) error {
	u, err := url.Parse(s)
	if err != nil || !u.IsAbs() || u.Fragment != "" || u.Host == "" && u.Scheme == "https" {
		return errors.New("must be an absolute URL without fragment")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if h := u.Hostname(); h != "localhost" && h != "127.0.0.1" && h != "::1" {
			return errors.New("http only on loopback; use https")
		}
	default:
		// A private-use scheme of a native app (RFC 8252), e.g.
		// org.example.app:/callback.
		if !strings.Contains(u.Scheme, ".") {
			return errors.New("https, loopback http, or a reverse-domain private scheme")
		}
	}
	return nil
}

// Add registers c (its ID and Created are set here) and returns it.
func (r *Clients) Add(ctx context.Context, c Client) (*Client, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c.Scopes = MustParseScopes(strings.Join(c.Scopes, " ")).Strings() // v2 form, no duplicates
	prefix := map[string]string{ClientApp: "app_", ClientService: "svc_", ClientDevice: "dev_"}[c.Kind]
	var b [8]byte
	rand.Read(b[:])
	c.ID = prefix + hex.EncodeToString(b[:])
	c.Created = r.now().UTC().Truncate(time.Second)
	data, err := json.Marshal(&c)
	if err != nil {
		return nil, err
	}
	o := store.AuthObject{Kind: kindClient, ID: c.ID, Data: r.seal.Seal(data, []byte(kindClient+"/"+c.ID))}
	if err := r.store.CreateAuthObject(ctx, o); err != nil {
		return nil, fmt.Errorf("store client: %w", err)
	}
	return &c, nil
}

// Get returns the client with this id; ErrNoClient if there is none.
func (r *Clients) Get(ctx context.Context, id string) (*Client, error) {
	if id == "" || len(id) > 64 {
		return nil, ErrNoClient
	}
	o, err := r.store.AuthObject(ctx, kindClient, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrNoClient
	}
	if err != nil {
		return nil, fmt.Errorf("look up client: %w", err)
	}
	return r.open(o)
}

func (r *Clients) open(o *store.AuthObject) (*Client, error) {
	data, err := r.seal.Open(o.Data, []byte(kindClient+"/"+o.ID))
	if err != nil {
		return nil, fmt.Errorf("open client %s: %w", o.ID, err)
	}
	var c Client
	if err := json.Unmarshal(data, &c); err != nil || c.ID != o.ID {
		return nil, fmt.Errorf("open client %s: damaged record", o.ID)
	}
	return &c, nil
}

// List returns every client, in id order.
func (r *Clients) List(ctx context.Context) ([]*Client, error) {
	objs, err := r.store.AuthObjects(ctx, kindClient, "")
	if err != nil {
		return nil, fmt.Errorf("list clients: %w", err)
	}
	out := make([]*Client, 0, len(objs))
	for i := range objs {
		c, err := r.open(&objs[i])
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// Remove deletes a client; its tokens fail on their next verification
// (within CacheTTL in another process). ErrNoClient if there is none.
func (r *Clients) Remove(ctx context.Context, id string) error {
	err := r.store.DeleteAuthObject(ctx, kindClient, id)
	if errors.Is(err, store.ErrNotFound) {
		return ErrNoClient
	}
	return err
}
