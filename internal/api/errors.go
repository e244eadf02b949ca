package api

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/ehrvault/ehrvault/internal/fhir"
	"github.com/ehrvault/ehrvault/internal/records"
)

// statusOf is the one table from domain error codes to HTTP statuses.
var statusOf = map[records.Code]int{
	records.Internal:           http.StatusInternalServerError,
	records.Invalid:            http.StatusBadRequest,
	records.Unprocessable:      http.StatusUnprocessableEntity,
	records.NotFound:           http.StatusNotFound,
	records.Gone:               http.StatusGone,
	records.Conflict:           http.StatusConflict,
	records.PreconditionFailed: http.StatusPreconditionFailed,
	records.NotSupported:       http.StatusBadRequest,
	records.Unavailable:        http.StatusServiceUnavailable,
	records.Forbidden:          http.StatusForbidden,
}

// httpError is a failure found by the API itself (authentication, media
// types, sizes, routes). Its status is part of it.
type httpError struct {
	status int
	code   string // OperationOutcome issue type
	msg    string
	header map[string]string
}

func (e *httpError) Error() string { return e.msg }

func errorf(status int, code, format string, args ...any) *httpError {
	return &httpError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

// problem returns the status and the issues a client is shown for err.
// Anything that is neither a records error nor an API error is internal:
// the client sees "internal error" and the request id, nothing else.
func problem(err error) (int, []fhir.Issue, *httpError) {
	var he *httpError
	if errors.As(err, &he) {
		return he.status, []fhir.Issue{{Severity: "error", Code: he.code, Message: he.msg}}, he
	}
	var re *records.Error
	if errors.As(err, &re) && re.Code != records.Internal {
		return statusOf[re.Code], re.Issues, nil
	}
	return http.StatusInternalServerError, []fhir.Issue{{
		Severity: "error", Code: "exception",
		Message: "internal error; the server log has the details under this request's id",
	}}, nil
}

// outcome builds an OperationOutcome.
func outcome(issues []fhir.Issue) fhir.Value {
	list := make([]fhir.Value, 0, len(issues))
	for _, is := range issues {
		o := fhir.Value{Kind: fhir.Object}
		sev := is.Severity
		if sev == "" {
			sev = "error"
		}
		code := is.Code
		if code == "" {
			code = "processing"
		}
		o.Set("severity", fhir.StringValue(sev))
		o.Set("code", fhir.StringValue(code))
		if is.Message != "" {
			o.Set("diagnostics", fhir.StringValue(is.Message))
		}
		if is.Path != "" {
			o.Set("expression", fhir.Value{Kind: fhir.Array, Items: []fhir.Value{fhir.StringValue(is.Path)}})
		}
		list = append(list, o)
	}
	v := fhir.Value{Kind: fhir.Object}
	v.Set("resourceType", fhir.StringValue("OperationOutcome"))
	v.Set("issue", fhir.Value{Kind: fhir.Array, Items: list})
	return v
}

// information is an OperationOutcome saying all went well.
func information(msg string) fhir.Value {
	return outcome([]fhir.Issue{{Severity: "information", Code: "informational", Message: msg}})
}
