package audit

import (
	"encoding/base64"
	"strconv"
	"strings"

	"github.com/ehrvault/ehrvault/internal/fhir"
)

// Code systems of the AuditEvent view.
const (
	systemEventType   = "http://terminology.hl7.org/CodeSystem/audit-event-type"
	systemInteraction = "http://hl7.org/fhir/restful-interaction"
	// SystemAction names ehrvault's actions that are no FHIR interaction
	// (import, token-create …).
	SystemAction     = "urn:ehrvault:audit-action"
	systemPurpose    = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
	systemEntityType = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
	systemObjectRole = "http://terminology.hl7.org/CodeSystem/object-role"
	systemSourceType = "http://terminology.hl7.org/CodeSystem/security-source-type"
	// SystemPrincipal prefixes the identifier system of an agent, by kind
	// (urn:ehrvault:principal:operator-token).
	SystemPrincipal = "urn:ehrvault:principal:"
	// SystemPatientKey is the identifier system of a patient's pseudonym.
	SystemPatientKey = "urn:ehrvault:patient-key"
)

// interactions are the FHIR restful-interaction codes among the actions.
var interactions = map[string]bool{
	"read": true, "vread": true, "update": true, "patch": true, "delete": true,
	"history-instance": true, "history-type": true, "history-system": true,
	"create": true, "search-type": true, "search-system": true, "search-compartment": true, "capabilities": true,
	"transaction": true, "batch": true, "operation": true,
}

// CRUDE is the AuditEvent.action code (C, R, U, D, E) of an action.
func CRUDE(action string) string {
	switch action {
	case "create":
		return "C"
	case "read", "vread", "search-type", "search-system", "search-compartment", "history-instance", "history-type", "history-system", ActionAuditRead:
		return "R"
	case "update", "patch":
		return "U"
	case "delete":
		return "D"
	}
	return "E"
}

// OutcomeCode is the AuditEvent.outcome code of an outcome: 0 success, 4
// minor failure (the client's, or a refusal), 8 serious failure (the
// server's).
func OutcomeCode(outcome string) string {
	switch outcome {
	case OutcomeSuccess:
		return "0"
	case OutcomeFailure, OutcomeDenied:
		return "4"
	}
	return "8"
}

// AuditEvent renders entry index as an R4 AuditEvent whose id is the
// entry's index in the log.
func (e *Entry) AuditEvent(index int64) fhir.Value {
	str := fhir.StringValue
	obj := func(kv ...any) fhir.Value {
		v := fhir.Value{Kind: fhir.Object}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i].(string), kv[i+1].(fhir.Value))
		}
		return v
	}
	arr := func(items ...fhir.Value) fhir.Value { return fhir.Value{Kind: fhir.Array, Items: items} }
	coding := func(system, code string) fhir.Value { return obj("system", str(system), "code", str(code)) }
	recorded := str(e.Time.UTC().Format(timeFormat))

	ae := obj("resourceType", str("AuditEvent"), "id", str(strconv.FormatInt(index, 10)),
		"meta", obj("versionId", str("1"), "lastUpdated", recorded))
	ae.Set("type", coding(systemEventType, "rest"))
	sys := SystemAction
	if interactions[e.Action] {
		sys = systemInteraction
	}
	ae.Set("subtype", arr(coding(sys, e.Action)))
	ae.Set("action", str(CRUDE(e.Action)))
	ae.Set("recorded", recorded)
	ae.Set("outcome", str(OutcomeCode(e.Outcome)))
	if e.Status != 0 {
		ae.Set("outcomeDesc", str(strconv.Itoa(e.Status)+" "+e.Outcome))
	} else if e.Outcome != "" {
		ae.Set("outcomeDesc", str(e.Outcome))
	}
	if e.Purpose != "" {
		ae.Set("purposeOfEvent", arr(obj("coding", arr(coding(systemPurpose, e.Purpose)))))
	}
	agent := obj()
	if e.Principal.ID != "" {
		agent.Set("who", obj("identifier", obj("system", str(SystemPrincipal+e.Principal.Kind), "value", str(e.Principal.ID))))
	} else {
		agent.Set("who", obj("display", str(e.Principal.Kind)))
	}
	agent.Set("requestor", fhir.BoolValue(true))
	if e.Role != "" {
		agent.Set("role", arr(obj("text", str(e.Role))))
	}
	if e.Source != "" && e.Source != "local" {
		agent.Set("network", obj("address", str(e.Source), "type", str("2"))) // 2: IP address
	}
	ae.Set("agent", arr(agent))
	ae.Set("source", obj("observer", obj("display", str("ehrvault")), "type", arr(coding(systemSourceType, "4"))))
	var entities []fhir.Value
	for _, r := range e.Resources {
		if r.ID == "" {
			continue
		}
		ref := r.Type + "/" + r.ID
		if r.Version > 0 {
			ref += "/_history/" + strconv.FormatInt(r.Version, 10)
		}
		entities = append(entities, obj("what", obj("reference", str(ref)), "type", coding(systemEntityType, "2")))
	}
	for _, p := range e.Patients() {
		entities = append(entities, obj(
			"what", obj("identifier", obj("system", str(SystemPatientKey), "value", str(p))),
			"type", coding(systemEntityType, "1"),
			"role", coding(systemObjectRole, "1")))
	}
	if len(e.Query) > 0 {
		var b strings.Builder
		for i, q := range e.Query {
			if i > 0 {
				b.WriteByte('&')
			}
			b.WriteString(q.Name + "=" + q.Value)
		}
		// 24: Query. The values are keyed hashes (h:…), but for the
		// parameters that only shape a result.
		entities = append(entities, obj("type", coding(systemEntityType, "2"), "role", coding(systemObjectRole, "24"),
			"query", str(base64.StdEncoding.EncodeToString([]byte(b.String())))))
	}
	for _, d := range e.Detail {
		if len(entities) == 0 {
			entities = append(entities, obj("type", coding(systemEntityType, "2")))
		}
		last := &entities[len(entities)-1]
		det := last.Get("detail")
		item := obj("type", str(d.Name), "valueString", str(d.Value))
		if det == nil {
			last.Set("detail", arr(item))
		} else {
			det.Items = append(det.Items, item)
		}
	}
	if len(entities) > 0 {
		ae.Set("entity", arr(entities...))
	}
	return ae
}
