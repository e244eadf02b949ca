package users

import (
	"context"
	"crypto/hmac"
	"crypto/subtle"
	"errors"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// TOTP parameters (RFC 6238 4: T0 = 0, X = 30 s; HMAC-SHA-1 and 6 digits,
// what every authenticator app supports).
const (
	totpPeriod = 30
	totpSkew   = 1 // steps either side of now (RFC 6238 5.2)
)

var totpOpts = totp.ValidateOpts{Period: totpPeriod, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}

// newTOTPKey returns a new TOTP secret (160 random bits, RFC 4226 4's
// recommendation) in base32 and its otpauth:// URI for a QR code.
func (s *Service) newTOTPKey(account string) (secret, uri string, err error) {
	k, err := totp.Generate(totp.GenerateOpts{Issuer: s.issuer, AccountName: account, Period: totpPeriod,
		SecretSize: 20, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		return "", "", errors.New("totp: generate secret")
	}
	return k.Secret(), k.URL(), nil
}

// totpStep returns the time step, within ±totpSkew of now, whose code is
// code; ok false if none. Every candidate is computed and compared in
// constant time.
func totpStep(secret, code string, now time.Time) (step int64, ok bool) {
	if len(code) != 6 {
		return 0, false
	}
	cur := now.Unix() / totpPeriod
	for d := int64(-totpSkew); d <= totpSkew; d++ {
		st := cur + d
		want, err := totp.GenerateCodeCustom(secret, time.Unix(st*totpPeriod, 0), totpOpts)
		if err != nil {
			return 0, false
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			step, ok = st, true
		}
	}
	return step, ok
}

// useTOTP accepts code for the user if it is the code of a step within
// ±1 of now and later than the last accepted step, and records the step:
// each code works once (RFC 6238 5.2). Concurrent uses of one code race
// on the compare-and-swap of the user record, and the loser re-reads the
// step and is refused.
func (s *Service) useTOTP(ctx context.Context, userID, code string) error {
	_, err := s.modify(ctx, userID, func(u *user) error {
		if len(u.TOTPSecret) == 0 || u.Disabled {
			return errCode
		}
		st, ok := totpStep(string(u.TOTPSecret), code, s.now())
		if !ok || st <= u.TOTPStep {
			return errCode
		}
		u.TOTPStep = st
		return nil
	})
	return err
}

// newRecoveryCodes returns RecoveryCodes fresh codes (80 random bits each)
// and their keyed hashes. They are random, so a keyed hash is enough; no
// slow hash is needed.
func (s *Service) newRecoveryCodes() (codes []string, hashes [][]byte) {
	for range RecoveryCodes {
		c := randomCode(10)
		codes = append(codes, c)
		hashes = append(hashes, s.lookup(KindUser+".rcode", canonCode(c)))
	}
	return codes, hashes
}

// useRecovery consumes one of the user's recovery codes.
func (s *Service) useRecovery(ctx context.Context, userID, code string) error {
	h := s.lookup(KindUser+".rcode", canonCode(code))
	_, err := s.modify(ctx, userID, func(u *user) error {
		if u.Disabled {
			return errCode
		}
		found := -1
		for i, r := range u.Recovery {
			if hmac.Equal(r, h) {
				found = i
			}
		}
		if found < 0 {
			return errCode
		}
		u.Recovery = append(u.Recovery[:found:found], u.Recovery[found+1:]...)
		return nil
	})
	return err
}
