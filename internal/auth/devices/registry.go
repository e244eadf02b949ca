// Package devices is the registry of enrolled endpoints: the workstations,
// tablets and app instances that hold a key pair the server knows. Tokens
// for people and apps are bound to such a key (DPoP or mutual TLS); this
// package says whether a key belongs to a device that may still be used.
//
// An admin makes a one-time enrollment code (NewCode) and hands it to the
// device; the device posts the code, its public key and a report of its
// posture, signed by that key (Enroll); the device is pending until an
// admin approves it (Approve); it may report its posture again later
// (ReportPosture); an admin may revoke it (Revoke).
//
// # Promises
//
//   - An enrollment code is 256 random bits, shown once, stored only as a
//     keyed hash (keyring PurposeAuthLookup), valid for CodeTTL, and used at
//     most once, even by two servers racing: using it deletes it.
//   - Every request from a device is a JWS signed by the device's key, with
//     the public key embedded as a JWK; only asymmetric algorithms matching
//     that key are accepted (ES256 for P-256, ES384 for P-384, EdDSA for
//     Ed25519, RS*/PS* for RSA of at least 2048 bits), never "none" or
//     HS*. A proof is fresh (ProofMaxAge), names what it is for, and is
//     accepted once.
//   - Device records are sealed (keyring PurposeAuthSeal, bound to their
//     kind and id) and found by a keyed hash of the key's RFC 7638
//     thumbprint; a key enrolls once, and a revoked key cannot enroll again.
//   - DeviceByKey admits only an approved, unrevoked device that meets
//     policy. A revocation, or a posture report that breaks policy, made
//     through this Registry bites at once; one made by another process (the
//     CLI beside a running server) within CacheTTL.
//
// # Non-promises
//
//   - A posture report is what the device says about itself. It is
//     recorded with its time, not verified: a compromised device can lie.
package devices

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ehrvault/ehrvault/internal/auth"
	"github.com/ehrvault/ehrvault/internal/store"
)

// Store kinds of this package's records.
const (
	KindDevice = "device"      // an enrolled device
	KindCode   = "device.code" // an unused enrollment code
)

// Kinds of device.
const (
	Workstation = "workstation"
	Tablet      = "tablet"
	AppInstance = "app-instance"
)

// DeviceKinds lists the kinds of device, in the order help texts show them.
var DeviceKinds = []string{Workstation, Tablet, AppInstance}

// States of a device.
const (
	StatePending  = "pending"  // enrolled, waiting for an admin
	StateApproved = "approved" // may be used
	StateRevoked  = "revoked"  // never again
)

// CodeTTL is how long an enrollment code stays valid.
const CodeTTL = 24 * time.Hour

// CodePrefix starts every enrollment code, so that people and secret
// scanners recognise one.
const CodePrefix = "ehd_"

// CacheTTL is how long DeviceByKey remembers an admitted device before it
// asks the store again: the longest a revocation by another process takes
// to bite.
const CacheTTL = time.Second

// cacheMax bounds the remembered devices; past it the memory is cleared.
const cacheMax = 4096

// maxLabel bounds labels and posture fields.
const maxLabel = 200

// Errors of the registry. The HTTP handler maps them to statuses.
var (
	// ErrNotFound: no device (or code) with that id.
	ErrNotFound = errors.New("devices: no such device")
	// ErrCode: the enrollment code is unknown, used or expired; all
	// three look alike. The handler answers 400 invalid_grant.
	ErrCode = errors.New("devices: enrollment code unknown, used or expired")
	// ErrProof wraps every refusal of a device's signed request; the text
	// after it names the check that failed, never a secret.
	ErrProof = errors.New("devices: proof of possession refused")
	// ErrKeyTaken: the key is enrolled already (perhaps as a revoked
	// device); enroll a new key.
	ErrKeyTaken = errors.New("devices: key already enrolled")
	// ErrUnencrypted: policy requires disk encryption and the device's
	// latest posture report says its disk is not encrypted.
	ErrUnencrypted = errors.New("devices: policy requires disk encryption and the device reports none")
	// ErrRevoked: the device is revoked, which is final.
	ErrRevoked = errors.New("devices: device is revoked")
	// ErrInvalid wraps bad input (a label, a kind, a posture field); the
	// text after it names the field. The handler answers 400.
	ErrInvalid = errors.New("devices: invalid input")
)

// Sealer seals records; *keyring.Sealer (PurposeAuthSeal) is one.
type Sealer interface {
	// Seal encrypts and authenticates plaintext, binding ad.
	Seal(plaintext, ad []byte) []byte
	// Open reverses Seal with the same ad; an error if anything differs.
	Open(sealed, ad []byte) ([]byte, error)
}

// MAC computes keyed hashes; *keyring.MAC (PurposeAuthLookup) is one.
type MAC interface {
	// Sum returns HMAC-SHA256 of msg.
	Sum(msg []byte) [sha256.Size]byte
}

// Posture is what a device reports about itself.
type Posture struct {
	OS            string `json:"os"`
	OSVersion     string `json:"os_version"`
	DiskEncrypted bool   `json:"disk_encrypted"` // absent counts as false
	ScreenLock    bool   `json:"screen_lock"`
	Hostname      string `json:"hostname"`
	// ReportedAt is when the server received the report (set by the
	// registry; a device's value is ignored).
	ReportedAt time.Time `json:"reported_at,omitzero"`
}

func (p *Posture) check() error {
	for _, f := range []struct{ name, v string }{{"os", p.OS}, {"os_version", p.OSVersion}, {"hostname", p.Hostname}} {
		if len(f.v) > maxLabel {
			return fmt.Errorf("%w: posture field %s is longer than %d bytes", ErrInvalid, f.name, maxLabel)
		}
		for _, r := range f.v {
			if r < 0x20 || r == 0x7f {
				return fmt.Errorf("%w: posture field %s holds a control character", ErrInvalid, f.name)
			}
		}
	}
	return nil
}

// Device is one enrolled device.
type Device struct {
	ID    string `json:"id"`
	Label string `json:"label"`
	Kind  string `json:"kind"` // Workstation, Tablet or AppInstance
	State string `json:"state"`
	// JKT is the RFC 7638 SHA-256 thumbprint of the key, base64url.
	JKT string `json:"jkt"`
	// Key is the public key as a JWK.
	Key        json.RawMessage `json:"key"`
	Code       string          `json:"code"` // id of the enrollment code used
	Enrolled   time.Time       `json:"enrolled"`
	Approved   time.Time       `json:"approved,omitzero"`
	ApprovedBy string          `json:"approved_by,omitempty"`
	Revoked    time.Time       `json:"revoked,omitzero"`
	RevokedBy  string          `json:"revoked_by,omitempty"`
	Posture    Posture         `json:"posture"` // the latest report
}

// Code is an enrollment code's record (never the code itself).
type Code struct {
	ID        string    `json:"id"`
	Label     string    `json:"label"` // becomes the device's label
	Kind      string    `json:"kind"`  // becomes the device's kind
	Created   time.Time `json:"created"`
	CreatedBy string    `json:"created_by"`
	Expires   time.Time `json:"expires"`
}

// Option changes a Registry.
type Option func(*Registry)

// WithClock sets the clock (default time.Now).
func WithClock(now func() time.Time) Option { return func(r *Registry) { r.now = now } }

// RequireDiskEncryption sets whether a device must report an encrypted
// disk to be approved and to keep passing DeviceByKey (default true).
func RequireDiskEncryption(on bool) Option { return func(r *Registry) { r.requireEncryption = on } }

// Registry is the registry of enrolled devices. It is safe for concurrent
// use.
type Registry struct {
	store             store.AuthObjects
	seal              Sealer
	mac               MAC
	now               func() time.Time
	requireEncryption bool

	mu    sync.Mutex
	cache map[string]admitted // by jkt
	proofs
}

// admitted is a device DeviceByKey admitted, remembered until.
type admitted struct {
	id    string
	until time.Time
}

// New returns a registry keeping its records in s, sealed by seal and
// found by keyed hashes of mac.
func New(s store.AuthObjects, seal Sealer, mac MAC, opts ...Option) *Registry {
	r := &Registry{store: s, seal: seal, mac: mac, now: time.Now, requireEncryption: true, cache: map[string]admitted{}}
	for _, o := range opts {
		o(r)
	}
	r.proofs.seen = map[string]time.Time{}
	return r
}

// RequiresDiskEncryption reports the registry's policy.
func (r *Registry) RequiresDiskEncryption() bool { return r.requireEncryption }

func (r *Registry) lookup(kind, value string) []byte {
	s := r.mac.Sum([]byte(kind + "\x00" + value))
	return s[:]
}

func ad(kind, id string) []byte { return []byte(kind + "/" + id) }

func randomID(prefix string) string {
	var b [8]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return prefix + hex.EncodeToString(b[:])
}

// validKind reports whether k is one of DeviceKinds.
func validKind(k string) bool {
	for _, x := range DeviceKinds {
		if x == k {
			return true
		}
	}
	return false
}

// NewCode makes a one-time enrollment code for a device of kind, to be
// labelled label, made by the principal id by. The code is returned once;
// only its keyed hash is stored.
func (r *Registry) NewCode(ctx context.Context, label, kind, by string) (string, *Code, error) {
	if !validKind(kind) {
		return "", nil, fmt.Errorf("%w: device kind %q: must be one of workstation, tablet, app-instance", ErrInvalid, kind)
	}
	if label == "" || len(label) > maxLabel {
		return "", nil, fmt.Errorf("%w: device label must be 1 to %d bytes", ErrInvalid, maxLabel)
	}
	var secret [32]byte
	rand.Read(secret[:]) // never fails (crypto/rand)
	code := CodePrefix + base64.RawURLEncoding.EncodeToString(secret[:])
	now := r.now().UTC().Truncate(time.Second)
	c := &Code{ID: randomID("dc_"), Label: label, Kind: kind, Created: now, CreatedBy: by, Expires: now.Add(CodeTTL)}
	data, err := json.Marshal(c)
	if err != nil {
		return "", nil, err
	}
	o := store.AuthObject{Kind: KindCode, ID: c.ID, Lookup: r.lookup(KindCode, code), Data: r.seal.Seal(data, ad(KindCode, c.ID)), Expires: c.Expires}
	if err := r.store.CreateAuthObject(ctx, o); err != nil {
		return "", nil, fmt.Errorf("store enrollment code: %w", err)
	}
	return code, c, nil
}

// Enroll enrolls the device that signed proof (a JWS of act "enroll",
// see the proof format in proof.go) as a pending device, using up its
// enrollment code. Errors: ErrProof, ErrCode, ErrKeyTaken, or a posture
// or store error.
func (r *Registry) Enroll(ctx context.Context, proof string) (*Device, error) {
	pr, err := r.verifyProof(proof, actEnroll)
	if err != nil {
		return nil, err
	}
	if pr.claims.Posture == nil {
		return nil, fmt.Errorf("%w: enroll proof carries no posture", ErrProof)
	}
	if err := pr.claims.Posture.check(); err != nil {
		return nil, err
	}
	if pr.claims.Code == "" {
		return nil, ErrCode
	}
	o, err := r.store.AuthObjectByLookup(ctx, KindCode, r.lookup(KindCode, pr.claims.Code))
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrCode
	}
	if err != nil {
		return nil, fmt.Errorf("look up enrollment code: %w", err)
	}
	var c Code
	if err := r.open(o, &c); err != nil {
		return nil, err
	}
	now := r.now().UTC()
	if !now.Before(c.Expires) {
		return nil, ErrCode
	}
	// Deleting the code is what uses it up: of two requests racing with
	// one code, only one deletes it.
	if err := r.store.DeleteAuthObject(ctx, KindCode, c.ID); errors.Is(err, store.ErrNotFound) {
		return nil, ErrCode
	} else if err != nil {
		return nil, fmt.Errorf("use enrollment code: %w", err)
	}
	key, err := pr.key.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("encode device key: %w", err)
	}
	p := *pr.claims.Posture
	p.ReportedAt = now
	d := &Device{ID: randomID("dev_"), Label: c.Label, Kind: c.Kind, State: StatePending, JKT: pr.jkt, Key: key,
		Code: c.ID, Enrolled: now, Posture: p}
	data, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	err = r.store.CreateAuthObject(ctx, store.AuthObject{Kind: KindDevice, ID: d.ID, Lookup: r.lookup(KindDevice, d.JKT), Data: r.seal.Seal(data, ad(KindDevice, d.ID))})
	if errors.Is(err, store.ErrExists) {
		return nil, ErrKeyTaken
	}
	if err != nil {
		return nil, fmt.Errorf("store device: %w", err)
	}
	return d, nil
}

func (r *Registry) open(o *store.AuthObject, v any) error {
	pt, err := r.seal.Open(o.Data, ad(o.Kind, o.ID))
	if err != nil {
		return fmt.Errorf("open %s record %s: %w", o.Kind, o.ID, err)
	}
	if err := json.Unmarshal(pt, v); err != nil {
		return fmt.Errorf("decode %s record %s: %w", o.Kind, o.ID, err)
	}
	return nil
}

// Device returns the device with id; ErrNotFound if none.
func (r *Registry) Device(ctx context.Context, id string) (*Device, error) {
	o, err := r.store.AuthObject(ctx, KindDevice, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read device: %w", err)
	}
	var d Device
	if err := r.open(o, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// Devices returns every device, in id order.
func (r *Registry) Devices(ctx context.Context) ([]Device, error) {
	list, err := r.store.AuthObjects(ctx, KindDevice, "")
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	out := make([]Device, 0, len(list))
	for i := range list {
		var d Device
		if err := r.open(&list[i], &d); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// update applies change to the device with id, retrying on a concurrent
// update, and forgets every admitted device.
func (r *Registry) update(ctx context.Context, kindOrLookup func() (*store.AuthObject, error), change func(*Device) error) (*Device, error) {
	defer r.forget()
	for range 5 {
		o, err := kindOrLookup()
		if err != nil {
			return nil, err
		}
		var d Device
		if err := r.open(o, &d); err != nil {
			return nil, err
		}
		if err := change(&d); err != nil {
			return nil, err
		}
		data, err := json.Marshal(&d)
		if err != nil {
			return nil, err
		}
		o.Data = r.seal.Seal(data, ad(KindDevice, d.ID))
		_, err = r.store.UpdateAuthObject(ctx, *o)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("update device: %w", err)
		}
		return &d, nil
	}
	return nil, fmt.Errorf("update device: %w", store.ErrConflict)
}

func (r *Registry) byID(ctx context.Context, id string) func() (*store.AuthObject, error) {
	return func() (*store.AuthObject, error) {
		o, err := r.store.AuthObject(ctx, KindDevice, id)
		if errors.Is(err, store.ErrNotFound) {
			return nil, ErrNotFound
		}
		if err != nil {
			return nil, fmt.Errorf("read device: %w", err)
		}
		return o, nil
	}
}

func (r *Registry) byKey(ctx context.Context, jkt string) func() (*store.AuthObject, error) {
	return func() (*store.AuthObject, error) {
		o, err := r.store.AuthObjectByLookup(ctx, KindDevice, r.lookup(KindDevice, jkt))
		if errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("%w: key not enrolled", ErrProof)
		}
		if err != nil {
			return nil, fmt.Errorf("look up device: %w", err)
		}
		return o, nil
	}
}

// Approve approves the pending device with id, for the principal id by.
// Approving an approved device changes nothing. Errors: ErrNotFound,
// ErrRevoked, ErrUnencrypted (when policy requires disk encryption).
func (r *Registry) Approve(ctx context.Context, id, by string) (*Device, error) {
	return r.update(ctx, r.byID(ctx, id), func(d *Device) error {
		switch {
		case d.State == StateRevoked:
			return ErrRevoked
		case r.requireEncryption && !d.Posture.DiskEncrypted:
			return ErrUnencrypted
		case d.State == StateApproved:
			return nil
		}
		d.State, d.Approved, d.ApprovedBy = StateApproved, r.now().UTC(), by
		return nil
	})
}

// Revoke revokes the device with id, for the principal id by, at once:
// DeviceByKey refuses it from now on in this process, and within
// CacheTTL in others. Revoking a revoked device changes nothing.
func (r *Registry) Revoke(ctx context.Context, id, by string) (*Device, error) {
	return r.update(ctx, r.byID(ctx, id), func(d *Device) error {
		if d.State == StateRevoked {
			return nil
		}
		d.State, d.Revoked, d.RevokedBy = StateRevoked, r.now().UTC(), by
		return nil
	})
}

// ReportPosture records the posture in proof (a JWS of act "posture" by
// an enrolled device's key) as the device's latest. Errors: ErrProof
// (also for a key that is not enrolled), ErrRevoked.
func (r *Registry) ReportPosture(ctx context.Context, proof string) (*Device, error) {
	pr, err := r.verifyProof(proof, actPosture)
	if err != nil {
		return nil, err
	}
	if pr.claims.Posture == nil {
		return nil, fmt.Errorf("%w: posture proof carries no posture", ErrProof)
	}
	if err := pr.claims.Posture.check(); err != nil {
		return nil, err
	}
	return r.update(ctx, r.byKey(ctx, pr.jkt), func(d *Device) error {
		if d.State == StateRevoked {
			return ErrRevoked
		}
		d.Posture = *pr.claims.Posture
		d.Posture.ReportedAt = r.now().UTC()
		return nil
	})
}

// Status returns the device that signed proof (a JWS of act "status").
// Errors: ErrProof (also for a key that is not enrolled).
func (r *Registry) Status(ctx context.Context, proof string) (*Device, error) {
	pr, err := r.verifyProof(proof, actStatus)
	if err != nil {
		return nil, err
	}
	o, err := r.byKey(ctx, pr.jkt)()
	if err != nil {
		return nil, err
	}
	var d Device
	if err := r.open(o, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// Check returns nil if d may be used now: approved and meeting policy;
// otherwise an error saying why (ErrRevoked, ErrUnencrypted, or that it
// is pending).
func (r *Registry) Check(d *Device) error {
	switch {
	case d.State == StateRevoked:
		return ErrRevoked
	case d.State != StateApproved:
		return errors.New("devices: device is waiting for approval")
	case r.requireEncryption && !d.Posture.DiskEncrypted:
		return ErrUnencrypted
	}
	return nil
}

// DeviceByKey returns the id of the approved, unrevoked device whose
// public key has the RFC 7638 SHA-256 thumbprint jkt (base64url), and that
// meets policy; auth.ErrUnauthenticated otherwise. Another error means the
// store failed.
func (r *Registry) DeviceByKey(ctx context.Context, jkt string) (string, error) {
	if len(jkt) != 43 {
		return "", auth.ErrUnauthenticated
	}
	now := r.now()
	r.mu.Lock()
	hit, ok := r.cache[jkt]
	r.mu.Unlock()
	if ok && now.Before(hit.until) {
		return hit.id, nil
	}
	o, err := r.store.AuthObjectByLookup(ctx, KindDevice, r.lookup(KindDevice, jkt))
	if errors.Is(err, store.ErrNotFound) {
		return "", auth.ErrUnauthenticated
	}
	if err != nil {
		return "", fmt.Errorf("look up device: %w", err)
	}
	var d Device
	if err := r.open(o, &d); err != nil {
		return "", err
	}
	// The lookup is a keyed hash of jkt; the stored thumbprint must match
	// too, so that a record moved under another lookup admits nobody.
	if d.JKT != jkt || r.Check(&d) != nil {
		return "", auth.ErrUnauthenticated
	}
	r.mu.Lock()
	if len(r.cache) >= cacheMax {
		clear(r.cache)
	}
	r.cache[jkt] = admitted{id: d.ID, until: now.Add(CacheTTL)}
	r.mu.Unlock()
	return d.ID, nil
}

// forget clears the memory of admitted devices.
func (r *Registry) forget() {
	r.mu.Lock()
	clear(r.cache)
	r.mu.Unlock()
}
