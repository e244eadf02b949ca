package devices

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// The device side of the protocol, for a device agent and for end-to-end
// tests: each call signs a fresh proof with the device's key.

// Enroll enrolls key at the server at serverURL (scheme and host, e.g.
// https://127.0.0.1:8443) with an enrollment code and the device's
// posture, and returns the device's status (pending until an admin
// approves it).
func Enroll(ctx context.Context, hc *http.Client, serverURL, code string, key *Key, p Posture) (*Status, error) {
	proof, err := key.Proof(actEnroll, code, &p, time.Now())
	if err != nil {
		return nil, err
	}
	return call(ctx, hc, http.MethodPost, serverURL+PathEnroll, proof)
}

// SendPosture reports the device's posture again.
func SendPosture(ctx context.Context, hc *http.Client, serverURL string, key *Key, p Posture) (*Status, error) {
	proof, err := key.Proof(actPosture, "", &p, time.Now())
	if err != nil {
		return nil, err
	}
	return call(ctx, hc, http.MethodPost, serverURL+PathPosture, proof)
}

// FetchStatus asks whether the device was approved and passes policy.
func FetchStatus(ctx context.Context, hc *http.Client, serverURL string, key *Key) (*Status, error) {
	proof, err := key.Proof(actStatus, "", nil, time.Now())
	if err != nil {
		return nil, err
	}
	return call(ctx, hc, http.MethodGet, serverURL+PathStatus, proof)
}

// ServerError is an error answer of the device endpoints.
type ServerError struct {
	Status      int    // HTTP status
	Code        string // the "error" member
	Description string // the "error_description" member
}

func (e *ServerError) Error() string {
	return fmt.Sprintf("device endpoint: %d %s: %s", e.Status, e.Code, e.Description)
}

func call(ctx context.Context, hc *http.Client, method, url, proof string) (*Status, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader(proof)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return nil, fmt.Errorf("device request: %w", err)
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/jose")
	} else {
		req.Header.Set(ProofHeader, proof)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("device request: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return nil, fmt.Errorf("device response: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		se := &ServerError{Status: resp.StatusCode}
		var e struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		if json.Unmarshal(b, &e) == nil {
			se.Code, se.Description = e.Error, e.Description
		}
		return nil, se
	}
	var s Status
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("device response: %w", err)
	}
	return &s, nil
}
