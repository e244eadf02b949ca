package auth

import "time"

// Kinds of principal.
const (
	KindOperator = "operator-token"  // an operator bearer token (ehrvault token create): scripts
	KindUser     = "user"            // a person, through a SMART app or the server's own pages
	KindService  = "backend-service" // a SMART backend service (client_credentials)
	KindDevice   = "medical-device"  // a connected medical device with write-only scopes
)

// Roles of people. What each may do is the access issue's to decide; the
// roles exist here so that users carry one.
const (
	RoleAdmin           = "admin"
	RoleSecurityOfficer = "security-officer"
	RoleClinician       = "clinician"
	RoleNurse           = "nurse"
	RoleFrontDesk       = "front-desk"
	RoleBilling         = "billing"
	RoleAuditor         = "auditor"
	RolePatient         = "patient"
)

// Roles lists every role, in the order help texts show them.
var Roles = []string{RoleAdmin, RoleSecurityOfficer, RoleClinician, RoleNurse, RoleFrontDesk, RoleBilling, RoleAuditor, RolePatient}

// ValidRole reports whether r is one of Roles.
func ValidRole(r string) bool {
	for _, x := range Roles {
		if x == r {
			return true
		}
	}
	return false
}

// Factor methods.
const (
	FactorPassword = "pwd" // RFC 8176 amr values
	FactorTOTP     = "otp"
	FactorWebAuthn = "hwk"
	FactorRecovery = "rcode" // a one-time recovery code
)

// Factor is one proof of identity, and when it was given.
type Factor struct {
	Method string
	At     time.Time
}

// Principal is who a request acts for.
type Principal struct {
	Kind  string // one of the Kind constants
	ID    string // public id: a token id, a user id, a client id
	Label string // what the operator named it

	Role    string   // a person's role; "" for programs
	User    string   // the person acting (user id), if any
	Client  string   // the SMART client the token was issued to, if any
	Device  string   // the enrolled device the token is bound to, if any
	Session string   // the login session behind the token, if any
	Patient string   // SMART launch context: the patient of patient/ scopes
	Scopes  []string // granted SMART scopes; nil for operator tokens, which may do anything
	Factors []Factor // how and when the person proved who they are
}

// FactorSince reports whether p proved itself with method at or after t
// (step-up: "MFA within the last 5 minutes"). method "" is any factor but
// the password.
func (p *Principal) FactorSince(method string, t time.Time) bool {
	for _, f := range p.Factors {
		if (f.Method == method || method == "" && f.Method != FactorPassword) && !f.At.Before(t) {
			return true
		}
	}
	return false
}
