package clove

// #include "clove.h"
import "C"

import (
	"encoding/json"
	"fmt"
)

// AuditQuery selects audit entries; its zero value asks for the newest 100 of any kind.
type AuditQuery struct {
	// Category is "security" (denials), "lifecycle" (spawn, exit, kill, pause, resume, level
	// changes) or "" for any.
	Category string
	// AgentID keeps the entries of one agent; 0 keeps every agent's.
	AgentID uint64
	// SinceID keeps the entries with a greater id, to read the log incrementally.
	SinceID uint64
	// Limit keeps the newest Limit entries: 0 means 100, and libclove returns at most 1 000.
	Limit uint32
}

// AuditEntry is one record of the audit log.
type AuditEntry struct {
	ID          uint64 `json:"id"`
	TimestampMS uint64 `json:"timestamp_ms"`
	Category    string `json:"category"`
	Event       string `json:"event"`
	AgentID     uint64 `json:"agent_id"`
	AgentName   string `json:"agent_name"`
	Success     bool   `json:"success"`
	// Details is the entry's details_json object, decoded.
	Details map[string]any `json:"-"`
}

// AuditLog reads the audit entries that q selects, oldest first.
func (rt *Runtime) AuditLog(q AuditQuery) ([]AuditEntry, error) {
	var c cCalls
	defer c.free()
	category := c.optionalStr(q.Category)
	if c.err != nil {
		return nil, c.err
	}
	var text *C.char
	if err := rt.call(func(p *C.clove_runtime) C.enum_clove_status {
		return C.clove_runtime_audit_log_json(p, category, C.uint64_t(q.AgentID), C.uint64_t(q.SinceID),
			C.uint32_t(q.Limit), &text)
	}); err != nil {
		return nil, err
	}
	defer C.clove_string_free(text)
	// details_json is a JSON object inside a JSON string: decoded in a second step.
	var raw []struct {
		AuditEntry
		DetailsJSON string `json:"details_json"`
	}
	if err := json.Unmarshal([]byte(C.GoString(text)), &raw); err != nil {
		return nil, fmt.Errorf("clove: decoding the audit log: %w", err)
	}
	entries := make([]AuditEntry, len(raw))
	for i, r := range raw {
		entries[i] = r.AuditEntry
		if err := json.Unmarshal([]byte(r.DetailsJSON), &entries[i].Details); err != nil {
			return nil, fmt.Errorf("clove: decoding the details of audit entry %d: %w", r.ID, err)
		}
	}
	return entries, nil
}
