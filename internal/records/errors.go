package records

import (
	"errors"
	"fmt"

	"github.com/ehrvault/ehrvault/internal/fhir"
)

// Code classifies a records error. The API maps each code to one HTTP
// status through one table; nothing else decides a status.
type Code uint8

// The error codes.
const (
	// Internal: a broken store, key or invariant. Clients see only
	// "internal error"; the cause is logged by id.
	Internal Code = iota
	// Invalid: the request or resource is malformed (400).
	Invalid
	// Unprocessable: well-formed FHIR that breaks a rule of the
	// interaction, such as a resource of the wrong type (422).
	Unprocessable
	// NotFound: no such resource or version (404).
	NotFound
	// Gone: the resource is deleted (410).
	Gone
	// Conflict: the write collides with another one (409).
	Conflict
	// PreconditionFailed: If-Match did not match, or a conditional
	// interaction matched more than one resource (412).
	PreconditionFailed
	// NotSupported: a valid request ehrvault does not implement (501 for
	// operations, 400 for search parameters, decided by the API).
	NotSupported
	// Unavailable: the store is busy or shutting down; try again (503).
	Unavailable
	// Forbidden: the caller may not write this resource (403): it
	// belongs to a patient outside the caller's write restriction.
	Forbidden
)

var codeNames = [...]string{"internal", "invalid", "unprocessable", "not-found", "gone", "conflict", "precondition-failed", "not-supported", "unavailable", "forbidden"}

func (c Code) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return fmt.Sprintf("code(%d)", c)
}

// Error is what records returns for everything a client can cause. Issues
// name elements, parameters and entries; they never quote a value.
type Error struct {
	Code   Code
	Issues []fhir.Issue
	// Version is set on Gone: the deletion version.
	Version int64
	cause   error
}

func (e *Error) Error() string {
	if len(e.Issues) > 0 {
		i := e.Issues[0]
		if i.Path != "" {
			return fmt.Sprintf("%s: %s: %s", e.Code, i.Path, i.Message)
		}
		return fmt.Sprintf("%s: %s", e.Code, i.Message)
	}
	if e.cause != nil {
		return fmt.Sprintf("%s: %v", e.Code, e.cause)
	}
	return e.Code.String()
}

func (e *Error) Unwrap() error { return e.cause }

// issueCode is the OperationOutcome issue type for each code.
var issueCode = [...]string{"exception", "invalid", "processing", "not-found", "deleted", "conflict", "conflict", "not-supported", "transient", "forbidden"}

func newError(c Code, path, format string, args ...any) *Error {
	return &Error{Code: c, Issues: []fhir.Issue{{
		Severity: "error",
		Code:     issueCode[c],
		Path:     path,
		Message:  fmt.Sprintf(format, args...),
	}}}
}

// ErrUnresolvedReference is the cause of the error for a conditional
// reference that matches no resource. An importer may retry the Bundle
// after loading others, which may hold the target.
var ErrUnresolvedReference = errors.New("conditional reference matches no resource")

// CodeOf returns the code of err: its own if it is an *Error, else Internal.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Internal
}

// prefixIssues puts where in front of every issue path of err, for errors
// found inside a Bundle entry.
func prefixIssues(err error, where string) error {
	var e *Error
	if !errors.As(err, &e) {
		return err
	}
	c := *e
	c.Issues = make([]fhir.Issue, len(e.Issues))
	for i, is := range e.Issues {
		if is.Path == "" {
			is.Path = where
		} else {
			is.Path = where + "." + is.Path
		}
		c.Issues[i] = is
	}
	return &c
}

// NewError returns an error a client caused, with one issue at path (an
// element, a parameter) saying format. The message must not quote a value
// the client sent: it may identify a patient.
func NewError(c Code, path, format string, args ...any) *Error {
	return newError(c, path, format, args...)
}
