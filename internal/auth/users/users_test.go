package users

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ehrvault/ehrvault/internal/auth"
	"github.com/ehrvault/ehrvault/internal/auth/authtest"
)

func TestUserCheckPassword(t *testing.T) {
	tests := []struct {
		pw      string
		context []string
		ok      bool
	}{
		{"purple elephants dance", nil, true},
		{"short pass", nil, false},                     // 10 characters
		{"elevenchars", nil, false},                    // 11
		{"twelve chars", nil, true},                    // 12
		{"äöüßéèêëîïôû", nil, true},                    // 12 code points, 24 bytes
		{"äöüßéèêëîï", nil, false},                     // 10 code points, 20 bytes: bytes must not count
		{"\uFB01\uFB01\uFB01\uFB01\uFB01x", nil, true}, // 6 ligatures: NFKC makes 11... +x = 11? see below
		{"winniethepooh", nil, false},                  // on the list
		{"WinnieThePooh", nil, false},                  // on the list, whatever the case
		{"monkey12345678", nil, false},                 // listed word + digits
		{"dragondragondragon", nil, false},             // listed word repeated
		{"password123456", nil, false},                 // password + digits
		{"aaaaaaaaaaaaaaaa", nil, false},               // one character
		{"abcabcabcabcabc", nil, false},                // a short unit repeated
		{"abcdefghijklmn", nil, false},                 // a sequence
		{"0987654321098", nil, false},                  // digits only
		{"ehrvault2026!!", nil, false},                 // the service name
		{"dr.alice.smith99", []string{"alice.smith"}, false},
		{"alice loves long walks", []string{"alice"}, true}, // a name inside a long one is fine
		{strings.Repeat("correct horse ", 19), nil, false},  // 266 > 256
	}
	for _, tc := range tests {
		err := CheckPassword(tc.pw, tc.context...)
		if tc.pw == "\uFB01\uFB01\uFB01\uFB01\uFB01x" {
			// U+FB01 (fi) is one code point, two after NFKC: 11 in all.
			if err == nil {
				t.Errorf("CheckPassword(ligatures) = nil, want too short: length must be counted after NFKC")
			}
			continue
		}
		if (err == nil) != tc.ok {
			t.Errorf("CheckPassword(%q, %q) = %v, want ok=%v", tc.pw, tc.context, err, tc.ok)
		}
		if err != nil && strings.Contains(err.Error(), tc.pw) {
			t.Errorf("CheckPassword(%q): error %q contains the password", tc.pw, err)
		}
	}
}

func TestUserHashPassword(t *testing.T) {
	phc := hashPassword("purple elephants dance", TestHashParams)
	if !strings.HasPrefix(phc, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("hashPassword = %q, want a PHC argon2id string with its parameters", phc)
	}
	if ok, err := verifyPassword("purple elephants dance", phc); !ok || err != nil {
		t.Errorf("verifyPassword(right) = %v, %v", ok, err)
	}
	if ok, _ := verifyPassword("purple elephants dancE", phc); ok {
		t.Errorf("verifyPassword(wrong) = true")
	}
	// NFKC: the same password from another keyboard.
	phc = hashPassword("caf\u00e9 au lait please", TestHashParams)
	if ok, _ := verifyPassword("cafe\u0301 au lait please", phc); !ok {
		t.Errorf("verifyPassword(decomposed é) = false, want true after NFKC")
	}
	if hashPassword("x", TestHashParams) == hashPassword("x", TestHashParams) {
		t.Errorf("two hashes of one password are equal: no random salt")
	}
	for _, bad := range []string{"", "$argon2i$v=19$m=64,t=1,p=1$AAAA$AAAA", "$argon2id$v=19$m=64,t=0,p=1$AAAA$AAAA", "$argon2id$v=19$x$AAAA$AAAA"} {
		if _, err := verifyPassword("x", bad); err == nil {
			t.Errorf("verifyPassword(%q) = nil error, want malformed", bad)
		}
	}
}

// The stored record never holds the argon2 hash in clear: not in the raw
// bytes, and not even in the opened user record, where it is sealed again.
func TestUserPasswordHashWrapped(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.enroll(t, "alice", auth.RoleClinician)
	o, err := e.db.AuthObject(ctx, KindUser, a.id)
	if err != nil {
		t.Fatal(err)
	}
	u, err := e.svc.openUser(o)
	if err != nil {
		t.Fatal(err)
	}
	phc, err := e.sealer.Open(u.Password, []byte("pwd/"+a.id))
	if err != nil {
		t.Fatalf("open the wrapped hash: %v", err)
	}
	hash := phc[bytes.LastIndexByte(phc, '$')+1:]
	inner, err := e.sealer.Open(o.Data, []byte(KindUser+"/"+a.id))
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"raw AuthObject data": o.Data, "opened user record": inner} {
		if bytes.Contains(b, []byte("$argon2id$")) || bytes.Contains(b, hash) {
			t.Errorf("%s holds the argon2 hash in clear", name)
		}
	}
	// The wrap is bound to the user: another user's ad does not open it.
	if _, err := e.sealer.Open(u.Password, []byte("pwd/usr_other")); err == nil {
		t.Errorf("the wrapped hash opened under another user's ad")
	}
	if bytes.Contains(o.Data, []byte("alice")) {
		t.Errorf("raw AuthObject data holds the user name in clear")
	}
}

func TestUserTOTP(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.enroll(t, "bob", auth.RoleNurse)
	step := 30 * time.Second
	if err := e.svc.useTOTP(ctx, a.id, e.code(t, a, 2*step)); err == nil {
		t.Errorf("code of now+2 steps accepted; RFC 6238 skew is ±1")
	}
	if err := e.svc.useTOTP(ctx, a.id, e.code(t, a, -2*step)); err == nil {
		t.Errorf("code of now-2 steps accepted; RFC 6238 skew is ±1")
	}
	if err := e.svc.useTOTP(ctx, a.id, e.code(t, a, -step)); err != nil {
		t.Errorf("code of now-1 step refused: %v", err)
	}
	c := e.code(t, a, 0)
	if err := e.svc.useTOTP(ctx, a.id, c); err != nil {
		t.Errorf("code of now refused: %v", err)
	}
	if err := e.svc.useTOTP(ctx, a.id, c); err == nil {
		t.Errorf("replayed code accepted")
	}
	if err := e.svc.useTOTP(ctx, a.id, e.code(t, a, -step)); err == nil {
		t.Errorf("code of an earlier step accepted after a later one")
	}
	if err := e.svc.useTOTP(ctx, a.id, e.code(t, a, step)); err != nil {
		t.Errorf("code of now+1 step refused: %v", err)
	}
	// Still refused a step later: the step, not the time, is remembered.
	e.clock.Add(step)
	if err := e.svc.useTOTP(ctx, a.id, c); err == nil {
		t.Errorf("replayed code accepted a step later")
	}
	for _, bad := range []string{"", "12345", "1234567", "abcdef"} {
		if err := e.svc.useTOTP(ctx, a.id, bad); err == nil {
			t.Errorf("useTOTP(%q) accepted", bad)
		}
	}
}

// Two requests racing with one code: only one wins.
func TestUserTOTPConcurrentUse(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.enroll(t, "carol", auth.RoleNurse)
	e.clock.Add(time.Minute)
	c := e.code(t, a, 0)
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { errs[i] = e.svc.useTOTP(ctx, a.id, c) })
	}
	wg.Wait()
	wins := 0
	for _, err := range errs {
		if err == nil {
			wins++
		} else if !errors.Is(err, errCode) {
			t.Errorf("useTOTP: %v, want errCode for the losers", err)
		}
	}
	if wins != 1 {
		t.Errorf("%d concurrent uses of one code won, want exactly 1", wins)
	}
}

func TestUserRecoveryCodeOnce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.enroll(t, "dave", auth.RoleBilling)
	if len(a.recovery) != RecoveryCodes {
		t.Fatalf("%d recovery codes, want %d", len(a.recovery), RecoveryCodes)
	}
	if err := e.svc.useRecovery(ctx, a.id, strings.ToUpper(a.recovery[3])); err != nil {
		t.Fatalf("useRecovery (upper case): %v", err)
	}
	if err := e.svc.useRecovery(ctx, a.id, a.recovery[3]); err == nil {
		t.Errorf("a recovery code worked twice")
	}
	if err := e.svc.useRecovery(ctx, a.id, a.recovery[4]); err != nil {
		t.Errorf("another recovery code refused: %v", err)
	}
	if err := e.svc.useRecovery(ctx, a.id, "aaaa-bbbb-cccc-dddd"); err == nil {
		t.Errorf("a made-up recovery code worked")
	}
	u, _ := e.svc.getUser(ctx, a.id)
	if len(u.Recovery) != RecoveryCodes-2 {
		t.Errorf("%d codes left, want %d", len(u.Recovery), RecoveryCodes-2)
	}
}

func TestUserThrottle(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.enroll(t, "erin", auth.RoleClinician)
	src := "198.51.100.7"
	for i := 0; i < 3; i++ {
		if _, err := e.svc.checkLogin(ctx, a.name, "wrong password here", src); !errors.Is(err, errCode) {
			t.Fatalf("attempt %d: %v, want errCode", i+1, err)
		}
	}
	// After 3 failures: a second's wait, before the password is checked.
	_, err := e.svc.checkLogin(ctx, a.name, a.password, src)
	var te *ThrottledError
	if !errors.As(err, &te) || te.RetryAfter != time.Second {
		t.Fatalf("4th attempt: %v, want ThrottledError of 1s", err)
	}
	// The delay doubles with each failure.
	want := time.Second
	for i := 0; i < 4; i++ {
		e.clock.Add(want)
		if _, err := e.svc.checkLogin(ctx, a.name, "wrong password here", src); !errors.Is(err, errCode) {
			t.Fatalf("failure after waiting %s: %v", want, err)
		}
		want *= 2
		_, err := e.svc.checkLogin(ctx, a.name, a.password, src)
		if !errors.As(err, &te) || te.RetryAfter != want {
			t.Fatalf("after %d failures: %v, want wait %s", 4+i, err, want)
		}
	}
	if delay(100) != throttleCap {
		t.Errorf("delay(100) = %s, want the cap %s", delay(100), throttleCap)
	}
	// Never a lock-out: after the wait the right password works.
	e.clock.Add(want)
	if _, err := e.svc.checkLogin(ctx, a.name, a.password, src); err != nil {
		t.Errorf("right password after the wait: %v", err)
	}
	if e.events.count(ActionLogin, OutcomeFailure) != 7 || e.events.count(ActionLogin, OutcomeDenied) != 5 {
		t.Errorf("recorded %d failures and %d throttled, want 7 and 5", e.events.count(ActionLogin, OutcomeFailure), e.events.count(ActionLogin, OutcomeDenied))
	}
	for _, ev := range e.events.list {
		if strings.Contains(ev.Detail, "wrong password") || strings.Contains(ev.Detail, a.password) {
			t.Errorf("an event holds a password: %+v", ev)
		}
	}
}

// One account attacked from many addresses stays throttled; one address
// trying many accounts is throttled too.
func TestUserThrottleAcrossAddresses(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.enroll(t, "frank", auth.RoleClinician)
	for i := 0; i < 3; i++ {
		e.svc.checkLogin(ctx, a.name, "wrong password here", "203.0.113."+string(rune('1'+i)))
	}
	var te *ThrottledError
	if _, err := e.svc.checkLogin(ctx, a.name, a.password, "203.0.113.99"); !errors.As(err, &te) {
		t.Errorf("account attacked from 3 addresses, attempt from a 4th: %v, want throttled", err)
	}
	b := e.enroll(t, "grace", auth.RoleClinician)
	// An address is shared (a clinic's NAT): a few failures on other
	// accounts do not hold back a colleague…
	for i := 0; i < sourceFree-1; i++ {
		e.svc.checkLogin(ctx, fmt.Sprintf("x%d", i), "wrong password here", "192.0.2.50")
	}
	if _, err := e.svc.checkLogin(ctx, b.name, b.password, "192.0.2.50"); err != nil {
		t.Errorf("address with %d failures on other accounts, a colleague logs in: %v, want it to work", sourceFree-1, err)
	}
	// …but an address spraying many accounts is throttled.
	e.svc.checkLogin(ctx, "x-last", "wrong password here", "192.0.2.50")
	if _, err := e.svc.checkLogin(ctx, b.name, b.password, "192.0.2.50"); !errors.As(err, &te) {
		t.Errorf("address that failed on %d accounts, trying another: %v, want throttled", sourceFree, err)
	}
	if _, err := e.svc.checkLogin(ctx, b.name, b.password, "192.0.2.51"); err != nil {
		t.Errorf("another account from another address: %v, want it to work", err)
	}
	// The address's count starts over once it has been quiet a while;
	// an account's does not.
	e.clock.Add(sourceReset + throttleCap)
	for i := 0; i < sourceFree-1; i++ {
		e.svc.checkLogin(ctx, fmt.Sprintf("y%d", i), "wrong password here", "192.0.2.50")
	}
	if _, err := e.svc.checkLogin(ctx, b.name, b.password, "192.0.2.50"); err != nil {
		t.Errorf("after %s quiet, the address's count must start over: %v", sourceReset, err)
	}
	c := e.enroll(t, "heidi", auth.RoleClinician)
	for i := 0; i < throttleFree; i++ {
		e.svc.checkLogin(ctx, c.name, "wrong password here", "192.0.2.60")
	}
	e.clock.Add(sourceReset + time.Minute)
	e.svc.checkLogin(ctx, c.name, "wrong password here", "192.0.2.61")
	if _, err := e.svc.checkLogin(ctx, c.name, c.password, "192.0.2.62"); !errors.As(err, &te) {
		t.Errorf("an account's failures must not start over after %s: %v, want throttled", sourceReset, err)
	}
}

func TestUserThrottleBounded(t *testing.T) {
	c := authtest.NewClock(time.Unix(1e9, 0))
	th := newThrottle(c.Now)
	for i := 0; i < throttleMax+10; i++ {
		th.fail("k" + string(rune(i)))
		if i%1000 == 0 {
			c.Add(time.Second)
		}
	}
	if len(th.m) > throttleMax {
		t.Errorf("throttle holds %d counters, want at most %d", len(th.m), throttleMax)
	}
}

func TestUserSessionTimeouts(t *testing.T) {
	e := newEnv(t)
	h := e.svc.Handler()
	a := e.enroll(t, "heidi", auth.RoleClinician)
	b := newBrowser(t, h)
	w := b.login(e, a, "")
	if w.Code != http.StatusSeeOther {
		t.Fatalf("login: %d\n%s", w.Code, w.Body)
	}
	p, err := e.svc.Session(b.request())
	if err != nil {
		t.Fatalf("Session after login: %v", err)
	}
	if p.Kind != auth.KindUser || p.User != a.id || p.Role != auth.RoleClinician || p.Session == "" {
		t.Errorf("principal %+v", p)
	}
	if !p.FactorSince(auth.FactorTOTP, e.clock.Now().Add(-time.Minute)) || !p.FactorSince(auth.FactorPassword, e.clock.Now().Add(-time.Minute)) {
		t.Errorf("factors %+v, want pwd and otp now", p.Factors)
	}
	// Idle: used every 14 minutes, it lives on past 15.
	for i := 0; i < 3; i++ {
		e.clock.Add(14 * time.Minute)
		if _, err := e.svc.Session(b.request()); err != nil {
			t.Fatalf("Session after 14 idle minutes: %v", err)
		}
	}
	e.clock.Add(15*time.Minute + time.Second)
	if _, err := e.svc.Session(b.request()); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("Session after 15 idle minutes: %v, want ErrUnauthenticated", err)
	}
	if err := e.svc.Alive(context.Background(), p.Session); err == nil {
		t.Errorf("Alive of an idle-expired (deleted) session = nil")
	}

	// Absolute: used every 10 minutes, it dies at 12 hours, and so does Alive.
	e.clock.Add(time.Minute)
	b = newBrowser(t, h)
	if w := b.login(e, a, ""); w.Code != http.StatusSeeOther {
		t.Fatalf("login: %d", w.Code)
	}
	p, err = e.svc.Session(b.request())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 71; i++ {
		e.clock.Add(10 * time.Minute)
		if _, err := e.svc.Session(b.request()); err != nil {
			t.Fatalf("Session at %d min: %v", 10*(i+1), err)
		}
	}
	if err := e.svc.Alive(context.Background(), p.Session); err != nil {
		t.Errorf("Alive at 11h50: %v", err)
	}
	e.clock.Add(10 * time.Minute)
	if _, err := e.svc.Session(b.request()); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("Session at 12h: %v, want ErrUnauthenticated", err)
	}
	if err := e.svc.Alive(context.Background(), p.Session); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("Alive at 12h: %v, want ErrUnauthenticated", err)
	}
}

// Alive is activity: a session whose tokens are used stays alive without
// its browser, and one used by neither dies for both.
func TestUserAliveIsActivity(t *testing.T) {
	e := newEnv(t)
	a := e.enroll(t, "ivan", auth.RoleClinician)
	_, p, err := e.svc.Login(context.Background(), a.name, a.password, auth.FactorTOTP, e.code(t, a, 0), "192.0.2.9")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 6; i++ {
		e.clock.Add(14 * time.Minute)
		if err := e.svc.Alive(context.Background(), p.Session); err != nil {
			t.Fatalf("Alive after %d×14 minutes of token use: %v, want nil", i+1, err)
		}
	}
	e.clock.Add(15 * time.Minute)
	if err := e.svc.Alive(context.Background(), p.Session); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("Alive after 15 idle minutes: %v, want ErrUnauthenticated", err)
	}
	e.clock.Add(-14 * time.Minute) // gone is gone, even if the clock steps back
	if err := e.svc.Alive(context.Background(), p.Session); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("Alive of a session that timed out: %v, want ErrUnauthenticated", err)
	}
	if err := e.svc.Alive(context.Background(), "ses_nope"); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("Alive(unknown) = %v", err)
	}
}

func TestUserEpochKillsSessions(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		do   func(e *env, a *account) error
	}{
		{"disable", func(e *env, a *account) error { return e.svc.Disable(ctx, a.id) }},
		{"password", func(e *env, a *account) error { return e.svc.SetPassword(ctx, a.id, "an entirely new passphrase") }},
		{"reset-mfa", func(e *env, a *account) error { _, err := e.svc.ResetMFA(ctx, a.id); return err }},
		// The epoch alone kills, even where deleting the sessions failed.
		{"epoch", func(e *env, a *account) error {
			_, err := e.svc.modify(ctx, a.id, func(u *user) error { u.Epoch++; return nil })
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			a := e.enroll(t, "judy", auth.RoleClinician)
			b := newBrowser(t, e.svc.Handler())
			b.login(e, a, "")
			p, err := e.svc.Session(b.request())
			if err != nil {
				t.Fatal(err)
			}
			// a second session, as from another browser
			e.clock.Add(30 * time.Second)
			_, p2, err := e.svc.Login(ctx, a.name, a.password, auth.FactorTOTP, e.code(t, a, 0), "192.0.2.2")
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.do(e, a); err != nil {
				t.Fatal(err)
			}
			if _, err := e.svc.Session(b.request()); !errors.Is(err, auth.ErrUnauthenticated) {
				t.Errorf("Session after %s: %v, want ErrUnauthenticated", tc.name, err)
			}
			for _, id := range []string{p.Session, p2.Session} {
				if err := e.svc.Alive(ctx, id); !errors.Is(err, auth.ErrUnauthenticated) {
					t.Errorf("Alive after %s: %v, want ErrUnauthenticated", tc.name, err)
				}
			}
			if objs, _ := e.db.AuthObjects(ctx, KindSession, a.id); len(objs) != 0 && tc.name != "epoch" {
				t.Errorf("%d sessions left after %s, want none", len(objs), tc.name)
			}
		})
	}
}

// A disabled user cannot log in, and enabled again can.
func TestUserDisabledLogin(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.enroll(t, "ken", auth.RoleClinician)
	e.svc.Disable(ctx, a.id)
	if _, err := e.svc.checkLogin(ctx, a.name, a.password, "192.0.2.3"); !errors.Is(err, errCode) {
		t.Errorf("disabled user's login: %v, want errCode", err)
	}
	e.svc.Enable(ctx, a.id)
	if _, err := e.svc.checkLogin(ctx, a.name, a.password, "192.0.2.3"); err != nil {
		t.Errorf("enabled user's login: %v", err)
	}
}

func TestUserEnrollmentCode(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	en, err := e.svc.Add(ctx, "Laura", "Dr Laura", auth.RoleClinician)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Add(ctx, "LAURA", "", auth.RoleNurse); !errors.Is(err, ErrExists) {
		t.Errorf("Add of the same name in another case: %v, want ErrExists", err)
	}
	if len(canonCode(en.Code)) < 26 { // 128 bits in base32
		t.Errorf("enrollment code %d characters, want at least 128 bits", len(canonCode(en.Code)))
	}
	u, err := e.svc.useEnrollment(ctx, strings.ToUpper(en.Code))
	if err != nil || u.ID != en.User.ID {
		t.Fatalf("useEnrollment: %v", err)
	}
	if _, err := e.svc.useEnrollment(ctx, en.Code); !errors.Is(err, errCode) {
		t.Errorf("second use of an enrollment code: %v, want errCode", err)
	}
	// Expiry.
	en2, _ := e.svc.ResetMFA(ctx, en.User.ID)
	e.clock.Add(EnrollmentTTL)
	if _, err := e.svc.useEnrollment(ctx, en2.Code); !errors.Is(err, errCode) {
		t.Errorf("expired enrollment code: %v, want errCode", err)
	}
	// A new code replaces the old.
	en3, _ := e.svc.ResetMFA(ctx, en.User.ID)
	en4, _ := e.svc.ResetMFA(ctx, en.User.ID)
	if _, err := e.svc.useEnrollment(ctx, en3.Code); !errors.Is(err, errCode) {
		t.Errorf("replaced enrollment code: %v, want errCode", err)
	}
	if _, err := e.svc.useEnrollment(ctx, en4.Code); err != nil {
		t.Errorf("current enrollment code: %v", err)
	}
	if _, err := e.svc.Add(ctx, "bad name", "", auth.RoleNurse); !errors.Is(err, ErrInvalid) {
		t.Errorf("name with a space: %v, want ErrInvalid", err)
	}
	if _, err := e.svc.Add(ctx, "mallory", "", "god"); !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown role: %v, want ErrInvalid", err)
	}
}

// The whole enrollment in pages: code, password, TOTP, recovery codes;
// then the session sees data, and a recovery code logs in.
func TestUserEnrollPages(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	en, _ := e.svc.Add(ctx, "mike", "", auth.RoleClinician)
	b := newBrowser(t, e.svc.Handler())
	if w := b.post("/auth/enroll", url.Values{"step": {"code"}, "code": {"nope-nope"}}); w.Code != http.StatusUnauthorized {
		t.Errorf("wrong enrollment code: %d, want 401", w.Code)
	}
	if w := b.post("/auth/enroll", url.Values{"step": {"code"}, "code": {en.Code}}); w.Code != http.StatusSeeOther {
		t.Fatalf("enrollment code: %d\n%s", w.Code, w.Body)
	}
	if _, err := e.svc.Session(b.request()); err == nil {
		t.Errorf("Session during enrollment (no factor yet) = nil error")
	}
	if w := b.get("/auth/enroll"); !strings.Contains(w.Body.String(), `id="password"`) {
		t.Fatalf("enroll page after the code has no password field:\n%s", w.Body)
	}
	if w := b.post("/auth/enroll", url.Values{"step": {"password"}, "password": {"password1234"}, "password2": {"password1234"}}); w.Code != http.StatusBadRequest {
		t.Errorf("common password: %d, want 400", w.Code)
	}
	pw := "seven quiet herons"
	if w := b.post("/auth/enroll", url.Values{"step": {"password"}, "password": {pw}, "password2": {pw}}); w.Code != http.StatusSeeOther {
		t.Fatalf("password: %d\n%s", w.Code, w.Body)
	}
	w := b.get("/auth/enroll")
	body := w.Body.String()
	// The link itself, not only its text: html/template turns a link
	// of an unknown scheme into "#ZgotmplZ".
	if !strings.Contains(body, `href="otpauth://totp/`) || !strings.Contains(body, `id="webauthn-register"`) {
		t.Fatalf("factor page lacks the otpauth link or the WebAuthn button:\n%s", body)
	}
	ss, _, _ := e.svc.current(b.request())
	a := &account{id: en.User.ID, name: "mike", password: pw, totp: ss.Pending}
	if w := b.post("/auth/enroll", url.Values{"step": {"totp"}, "code": {"000000"}}); w.Code != http.StatusUnauthorized {
		t.Errorf("wrong TOTP confirmation: %d, want 401", w.Code)
	}
	w = b.post("/auth/enroll", url.Values{"step": {"totp"}, "code": {e.code(t, a, 0)}})
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `id="recovery-codes"`) {
		t.Fatalf("TOTP confirmation: %d\n%s", w.Code, w.Body)
	}
	codes := strings.Split(w.Body.String(), "<li><code>")[1:]
	if len(codes) != RecoveryCodes {
		t.Fatalf("%d recovery codes shown, want %d", len(codes), RecoveryCodes)
	}
	rc := codes[0][:strings.Index(codes[0], "<")]
	if _, err := e.svc.Session(b.request()); err != nil {
		t.Errorf("Session after enrollment: %v", err)
	}
	// The confirmation code cannot log in again.
	b2 := newBrowser(t, e.svc.Handler())
	b2.post("/auth/login", url.Values{"username": {"mike"}, "password": {pw}})
	if w := b2.post("/auth/login/factor", url.Values{"method": {"totp"}, "code": {e.code(t, a, 0)}}); w.Code != http.StatusUnauthorized {
		t.Errorf("enrollment's TOTP code reused for login: %d, want 401", w.Code)
	}
	if w := b2.post("/auth/login/factor", url.Values{"method": {"recovery"}, "code": {rc}}); w.Code != http.StatusSeeOther {
		t.Errorf("login with a recovery code: %d\n%s", w.Code, w.Body)
	}
	p, err := e.svc.Session(b2.request())
	if err != nil || !p.FactorSince(auth.FactorRecovery, e.clock.Now()) {
		t.Errorf("Session after recovery login: %v %+v", err, p)
	}
}

func TestUserLoginNeedsSecondFactor(t *testing.T) {
	e := newEnv(t)
	a := e.enroll(t, "nina", auth.RoleClinician)
	b := newBrowser(t, e.svc.Handler())
	b.post("/auth/login", url.Values{"username": {a.name}, "password": {a.password}})
	if _, err := e.svc.Session(b.request()); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("Session after the password alone: %v, want ErrUnauthenticated", err)
	}
	ss, _, err := e.svc.current(b.request())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Alive(context.Background(), ss.ID); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("Alive of a half-logged-in session: %v", err)
	}
	before := b.cookies[SessionCookie]
	b.post("/auth/login/factor", url.Values{"method": {"totp"}, "code": {e.code(t, a, 0)}})
	if b.cookies[SessionCookie] == before {
		t.Errorf("the session cookie stayed the same across login: fixation")
	}
	if _, err := e.svc.Session(b.request()); err != nil {
		t.Errorf("Session after TOTP: %v", err)
	}
	// A user with no factor enrolled (added, never enrolled) cannot log in.
	e.svc.Add(context.Background(), "oscar", "", auth.RoleClinician)
	if _, err := e.svc.checkLogin(context.Background(), "oscar", "", "192.0.2.4"); err == nil {
		t.Errorf("login of an unenrolled user succeeded")
	}
}

func TestUserCSRF(t *testing.T) {
	e := newEnv(t)
	a := e.enroll(t, "pat", auth.RoleClinician)
	h := e.svc.Handler()
	for _, path := range []string{"/auth/login", "/auth/enroll", "/auth/logout", "/auth/stepup", "/auth/login/factor"} {
		b := newBrowser(t, h)
		b.login(e, a, "")
		e.clock.Add(30 * time.Second)
		for _, tok := range []string{"", "forged-forged-forged-forged-forged-forged"} {
			w := b.post(path, url.Values{"csrf": {tok}, "username": {a.name}, "password": {a.password}, "code": {"x"}, "step": {"code"}})
			if w.Code != http.StatusForbidden && !(w.Code == http.StatusSeeOther && path == "/auth/login/factor") {
				t.Errorf("POST %s with csrf %q: %d, want 403", path, tok, w.Code)
			}
		}
		if path == "/auth/logout" {
			if _, err := e.svc.Session(b.request()); err != nil {
				t.Errorf("forged logout ended the session")
			}
		}
	}
	b := newBrowser(t, h)
	b.login(e, a, "")
	if w := b.postJSON("/auth/webauthn/login/begin", "{}"); w.Code != http.StatusOK && w.Code != http.StatusBadRequest {
		t.Fatalf("JSON with the CSRF header: %d", w.Code)
	}
	delete(b.cookies, CSRFCookie)
	if w := b.postJSON("/auth/webauthn/login/begin", "{}"); w.Code != http.StatusForbidden {
		t.Errorf("JSON without CSRF: %d, want 403", w.Code)
	}
}

func TestUserOpenRedirect(t *testing.T) {
	for _, tc := range []struct {
		next string
		ok   bool
	}{
		{"/fhir/Patient?_count=5", true},
		{"/", true},
		{"", false},
		{"//evil.example/x", false},
		{"/\\evil.example", false},
		{"https://evil.example/", false},
		{"javascript:alert(1)", false},
		{"/x\r\nLocation: https://evil.example", false},
		{"evil.example", false},
		{"/\t/evil.example", false},
	} {
		if got := localPath(tc.next); got != tc.ok {
			t.Errorf("localPath(%q) = %v, want %v", tc.next, got, tc.ok)
		}
	}
	e := newEnv(t)
	if got := e.svc.LoginURL("https://evil.example/"); got != "/auth/login" {
		t.Errorf("LoginURL(evil) = %q", got)
	}
	if got := e.svc.LoginURL("/fhir/Patient?x=1&y=2"); got != "/auth/login?next=%2Ffhir%2FPatient%3Fx%3D1%26y%3D2" {
		t.Errorf("LoginURL(local) = %q", got)
	}
	a := e.enroll(t, "quinn", auth.RoleClinician)
	h := e.svc.Handler()
	b := newBrowser(t, h)
	w := b.login(e, a, "//evil.example/steal")
	if loc := w.Header().Get("Location"); loc != "/auth/" {
		t.Errorf("login with next=//evil.example: redirected to %q, want /auth/", loc)
	}
	e.clock.Add(30 * time.Second)
	b = newBrowser(t, h)
	w = b.login(e, a, "/fhir/Patient?_count=5")
	if loc := w.Header().Get("Location"); loc != "/fhir/Patient?_count=5" {
		t.Errorf("login with a local next: redirected to %q", loc)
	}
}

func TestUserStepUp(t *testing.T) {
	e := newEnv(t)
	a := e.enroll(t, "rita", auth.RoleClinician)
	b := newBrowser(t, e.svc.Handler())
	b.login(e, a, "")
	e.clock.Add(10 * time.Minute)
	p, _ := e.svc.Session(b.request())
	if p.FactorSince("", e.clock.Now().Add(-5*time.Minute)) {
		t.Fatalf("FactorSince(5 min) true 10 minutes after login")
	}
	if w := b.get("/auth/stepup?next=/fhir/Patient"); !strings.Contains(w.Body.String(), `id="code"`) {
		t.Fatalf("step-up page has no code field")
	}
	w := b.post("/auth/stepup", url.Values{"method": {"totp"}, "code": {e.code(t, a, 0)}, "next": {"/fhir/Patient"}})
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/fhir/Patient" {
		t.Fatalf("step-up: %d %q", w.Code, w.Header().Get("Location"))
	}
	p, err := e.svc.Session(b.request())
	if err != nil || !p.FactorSince("", e.clock.Now().Add(-5*time.Minute)) {
		t.Errorf("after step-up: %v, factors %+v", err, p)
	}
	if p.Session == "" || e.svc.Alive(context.Background(), p.Session) != nil {
		t.Errorf("session not alive after step-up")
	}
}

func TestUserLogout(t *testing.T) {
	e := newEnv(t)
	a := e.enroll(t, "sam", auth.RoleClinician)
	b := newBrowser(t, e.svc.Handler())
	b.login(e, a, "")
	p, _ := e.svc.Session(b.request())
	old := b.cookies[SessionCookie]
	if w := b.post("/auth/logout", url.Values{}); w.Code != http.StatusSeeOther {
		t.Fatalf("logout: %d", w.Code)
	}
	b.cookies[SessionCookie] = old // a copied cookie
	if _, err := e.svc.Session(b.request()); err == nil {
		t.Errorf("Session after logout = nil error")
	}
	if e.svc.Alive(context.Background(), p.Session) == nil {
		t.Errorf("Alive after logout = nil")
	}
}

func TestUserCookieAttributes(t *testing.T) {
	e := newEnv(t)
	a := e.enroll(t, "tina", auth.RoleClinician)
	b := newBrowser(t, e.svc.Handler())
	b.post("/auth/login", url.Values{"username": {a.name}, "password": {a.password}})
	w := b.post("/auth/login/factor", url.Values{"method": {"totp"}, "code": {e.code(t, a, 0)}})
	var found bool
	for _, c := range w.Result().Cookies() {
		if c.Name == SessionCookie {
			found = true
			if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Domain != "" {
				t.Errorf("session cookie %+v, want Secure HttpOnly SameSite=Strict Path=/ no Domain", c)
			}
			if len(c.Value) < 43 {
				t.Errorf("session cookie value of %d characters, want 256 bits", len(c.Value))
			}
		}
	}
	if !found {
		t.Fatalf("no session cookie set")
	}
}

func TestUserAdminAPI(t *testing.T) {
	e := newEnv(t)
	var who *auth.Principal
	h := e.svc.AdminHandler(func(r *http.Request) (*auth.Principal, error) {
		if who == nil {
			return nil, auth.ErrUnauthenticated
		}
		return who, nil
	})
	call := func(method, path, body string) (int, map[string]any) {
		req, _ := http.NewRequest(method, testBase+path, strings.NewReader(body))
		req.RemoteAddr = "192.0.2.1:4000"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		var out map[string]any
		json.Unmarshal(w.Body.Bytes(), &out)
		return w.Code, out
	}
	now := e.clock.Now()
	for _, tc := range []struct {
		p    *auth.Principal
		want int
	}{
		{nil, 401},
		{&auth.Principal{Kind: auth.KindUser, Role: auth.RoleClinician, Factors: []auth.Factor{{Method: auth.FactorTOTP, At: now}}}, 403},
		{&auth.Principal{Kind: auth.KindUser, Role: auth.RoleAdmin}, 403}, // no second factor
		{&auth.Principal{Kind: auth.KindService}, 403},
		{&auth.Principal{Kind: auth.KindUser, Role: auth.RoleAdmin, Factors: []auth.Factor{{Method: auth.FactorTOTP, At: now}}}, 200},
		{&auth.Principal{Kind: auth.KindOperator, ID: "tok_1"}, 200},
	} {
		who = tc.p
		if code, _ := call("GET", "/admin/users", ""); code != tc.want {
			t.Errorf("GET /admin/users as %+v: %d, want %d", tc.p, code, tc.want)
		}
		if tc.want != 200 {
			if code, _ := call("POST", "/admin/users", `{"name":"xavier","role":"nurse"}`); code != tc.want {
				t.Errorf("POST /admin/users as %+v: %d, want %d", tc.p, code, tc.want)
			}
		}
	}
	who = &auth.Principal{Kind: auth.KindOperator, ID: "tok_1"}
	code, out := call("POST", "/admin/users", `{"name":"uma","display_name":"Uma","role":"nurse"}`)
	if code != 201 || out["enrollment_code"] == "" {
		t.Fatalf("add: %d %v", code, out)
	}
	id := out["user"].(map[string]any)["id"].(string)
	if code, _ := call("POST", "/admin/users", `{"name":"UMA","role":"nurse"}`); code != 409 {
		t.Errorf("add of a taken name: %d, want 409", code)
	}
	if code, out := call("POST", "/admin/users", `{"name":"vic","role":"wizard"}`); code != 400 || out["error"] != "invalid_request" {
		t.Errorf("add with a bad role: %d %v", code, out)
	}
	if code, out := call("POST", "/admin/users/"+id+"/role", `{"role":"clinician"}`); code != 200 || out["user"].(map[string]any)["role"] != "clinician" {
		t.Errorf("set-role: %d %v", code, out)
	}
	if code, out := call("POST", "/admin/users/"+id+"/disable", ""); code != 200 || out["user"].(map[string]any)["disabled"] != true {
		t.Errorf("disable: %d %v", code, out)
	}
	if code, out := call("POST", "/admin/users/"+id+"/enable", ""); code != 200 || out["user"].(map[string]any)["disabled"] != false {
		t.Errorf("enable: %d %v", code, out)
	}
	if code, out := call("POST", "/admin/users/"+id+"/reset-mfa", ""); code != 200 || out["enrollment_code"] == nil {
		t.Errorf("reset-mfa: %d %v", code, out)
	}
	if e.events.count(ActionDisable, OutcomeSuccess) != 1 {
		t.Errorf("%d disable events recorded, want 1", e.events.count(ActionDisable, OutcomeSuccess))
	}
	for _, ev := range e.events.list {
		if ev.Action == ActionDisable && ev.Source != "192.0.2.1" {
			t.Errorf("disable through the API recorded source %q, want the caller's address", ev.Source)
		}
	}
	if code, _ := call("POST", "/admin/users/usr_nobody/disable", ""); code != 404 {
		t.Errorf("disable of an unknown user: %d, want 404", code)
	}
	if code, out := call("GET", "/admin/users", ""); code != 200 || len(out["users"].([]any)) != 1 {
		t.Errorf("list: %d %v", code, out)
	}
	// An admin cannot disable themself.
	who = &auth.Principal{Kind: auth.KindUser, ID: id, User: id, Role: auth.RoleAdmin, Factors: []auth.Factor{{Method: auth.FactorTOTP, At: now}}}
	if code, _ := call("POST", "/admin/users/"+id+"/disable", ""); code != 400 {
		t.Errorf("admin disabling themself: %d, want 400", code)
	}
}

func TestUserChangePassword(t *testing.T) {
	e := newEnv(t)
	a := e.enroll(t, "zoe", auth.RoleClinician)
	b := newBrowser(t, e.svc.Handler())
	b.login(e, a, "")
	e.clock.Add(6 * time.Minute)
	// Past 5 minutes, the page asks for a step-up first.
	if w := b.get("/auth/password"); w.Code != http.StatusSeeOther || !strings.HasPrefix(w.Header().Get("Location"), "/auth/stepup?next=") {
		t.Fatalf("GET /auth/password 6 min after login: %d %q, want a redirect to step-up", w.Code, w.Header().Get("Location"))
	}
	b.post("/auth/stepup", url.Values{"method": {"totp"}, "code": {e.code(t, a, 0)}})
	if w := b.get("/auth/password"); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `id="new-password"`) {
		t.Fatalf("GET /auth/password after step-up: %d", w.Code)
	}
	p, _ := e.svc.Session(b.request())
	np := "an owl in the attic at night"
	if w := b.post("/auth/password", url.Values{"password": {"not my password at all"}, "new-password": {np}, "new-password2": {np}}); w.Code != http.StatusUnauthorized {
		t.Errorf("wrong current password: %d, want 401", w.Code)
	}
	if w := b.post("/auth/password", url.Values{"password": {a.password}, "new-password": {"zoe-zoe-zoe-1"}, "new-password2": {"zoe-zoe-zoe-1"}}); w.Code != http.StatusBadRequest {
		t.Errorf("new password built from the user name: %d, want 400", w.Code)
	}
	if w := b.post("/auth/password", url.Values{"password": {a.password}, "new-password": {np}, "new-password2": {np}}); w.Code != http.StatusSeeOther {
		t.Fatalf("change: %d %s", w.Code, w.Body)
	}
	if e.svc.Alive(context.Background(), p.Session) == nil {
		t.Errorf("session alive after a password change")
	}
	if _, err := e.svc.checkLogin(context.Background(), a.name, a.password, "192.0.2.77"); err == nil {
		t.Errorf("old password still works")
	}
	if _, err := e.svc.checkLogin(context.Background(), a.name, np, "192.0.2.78"); err != nil {
		t.Errorf("new password: %v", err)
	}
}

// Two people racing with one enrollment code: only one gets in.
func TestUserEnrollmentCodeConcurrentUse(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	en, err := e.svc.Add(ctx, "yara", "", auth.RoleNurse)
	if err != nil {
		t.Fatal(err)
	}
	const n = 6
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { _, errs[i] = e.svc.useEnrollment(ctx, en.Code) })
	}
	wg.Wait()
	wins := 0
	for _, err := range errs {
		if err == nil {
			wins++
		}
	}
	if wins != 1 {
		t.Errorf("%d concurrent uses of one enrollment code won, want exactly 1 (%v)", wins, errs)
	}
}

// A throttled page says a wait of at least a second, rounded up, and so
// does its Retry-After.
func TestThrottledPageWait(t *testing.T) {
	e := newEnv(t)
	for d, want := range map[time.Duration]string{400 * time.Millisecond: "1s", 1500 * time.Millisecond: "2s", 4 * time.Second: "4s"} {
		w := httptest.NewRecorder()
		e.svc.fail(w, httptest.NewRequest("POST", "/auth/login", nil), "login", page{Title: "Sign in"}, &ThrottledError{RetryAfter: d})
		if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != strings.TrimSuffix(want, "s") ||
			!strings.Contains(w.Body.String(), "Try again in "+want+".") {
			t.Errorf("wait %s: %d, Retry-After %q; want 429 saying %s", d, w.Code, w.Header().Get("Retry-After"), want)
		}
	}
}

// A patient user is linked to their own Patient resource: their sessions
// carry it (the SMART consent page offers no other), and only patients
// can be linked.
func TestUserSetPatient(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.enroll(t, "pat", auth.RolePatient)
	if err := e.svc.SetPatient(ctx, a.id, "bad id!"); !errors.Is(err, ErrInvalid) {
		t.Errorf("SetPatient(bad id) = %v, want ErrInvalid", err)
	}
	_, before, err := e.svc.Login(ctx, a.name, a.password, auth.FactorTOTP, e.code(t, a, 0), "192.0.2.9")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.SetPatient(ctx, a.id, "pt-123"); err != nil {
		t.Fatalf("SetPatient = %v", err)
	}
	if err := e.svc.Alive(ctx, before.Session); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("a session from before the link is still alive: %v", err)
	}
	e.clock.Add(time.Minute)
	_, p, err := e.svc.Login(ctx, a.name, a.password, auth.FactorTOTP, e.code(t, a, 2), "192.0.2.9")
	if err != nil {
		t.Fatal(err)
	}
	if p.Patient != "pt-123" {
		t.Errorf("principal of a linked patient has Patient %q, want pt-123", p.Patient)
	}
	c := e.enroll(t, "clin", auth.RoleClinician)
	if err := e.svc.SetPatient(ctx, c.id, "pt-123"); !errors.Is(err, ErrInvalid) {
		t.Errorf("SetPatient on a clinician = %v, want ErrInvalid", err)
	}
	if u, err := e.svc.Resolve(ctx, a.id); err != nil || u.Patient != "pt-123" {
		t.Errorf("Resolve = %+v, %v; want Patient pt-123", u, err)
	}
}
