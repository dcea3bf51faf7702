// Package wire defines the MQTT protocol spoken between the manager and its
// proplets: topic layout and message bodies. It depends on the standard
// library only, so both ends (and third-party clients) can import it cheaply.
//
// Every proplet owns the subtree {prefix}/proplets/{id}/...; the embedded
// broker's ACL lets a proplet touch nothing outside it. See docs/protocol.md.
package wire

import (
	"errors"
	"strings"
)

// DefaultPrefix is the topic prefix used when none is configured.
const DefaultPrefix = "propeller/v1"

// ManagerClientID is the MQTT client id prefix reserved for managers; a
// proplet may not connect with it.
const ManagerClientID = "propeller-manager"

// Topic kinds: the last segment(s) of a proplet's topic.
const (
	KindStatus    = "status"
	KindHeartbeat = "heartbeat"
	KindCommands  = "commands"
	KindEvents    = "events"
	KindFLUpdates = "fl/updates"
	// KindArtifactRequest is published by a proplet asking the manager to
	// relay an artifact; KindArtifactChunks carries the answer back.
	KindArtifactRequest = "artifacts/request"
	KindArtifactChunks  = "artifacts/chunks"
	// KindCredential carries a proplet's enrolled secret. The embedded
	// broker writes it straight to the one connection that enrolled, right
	// after its CONNACK; it is never routed, so no subscriber (nor the
	// retained store) ever holds it, and no client may subscribe to it.
	KindCredential = "credential"
)

// Topics builds topic names under one prefix. The zero value uses
// DefaultPrefix.
type Topics struct {
	Prefix string
}

func (t Topics) prefix() string {
	if t.Prefix == "" {
		return DefaultPrefix
	}
	return t.Prefix
}

// Proplet returns the root of a proplet's subtree, without trailing slash.
func (t Topics) Proplet(id string) string { return t.prefix() + "/proplets/" + id }

// For returns the topic of one kind in a proplet's subtree.
func (t Topics) For(id, kind string) string { return t.Proplet(id) + "/" + kind }

func (t Topics) Status(id string) string    { return t.For(id, KindStatus) }
func (t Topics) Heartbeat(id string) string { return t.For(id, KindHeartbeat) }
func (t Topics) Commands(id string) string  { return t.For(id, KindCommands) }
func (t Topics) Events(id string) string    { return t.For(id, KindEvents) }
func (t Topics) FLUpdates(id string) string { return t.For(id, KindFLUpdates) }
func (t Topics) ArtifactRequest(id string) string {
	return t.For(id, KindArtifactRequest)
}
func (t Topics) ArtifactChunks(id string) string { return t.For(id, KindArtifactChunks) }
func (t Topics) Credential(id string) string     { return t.For(id, KindCredential) }

// AllOf returns the wildcard filter matching one kind for every proplet,
// as the manager subscribes to it.
func (t Topics) AllOf(kind string) string { return t.prefix() + "/proplets/+/" + kind }

// ErrForeignTopic is returned by Parse for a topic outside the prefix.
var ErrForeignTopic = errors.New("wire: topic is not a proplet topic")

// Parse splits a proplet topic into the proplet id and the kind.
func (t Topics) Parse(topic string) (id, kind string, err error) {
	rest, ok := strings.CutPrefix(topic, t.prefix()+"/proplets/")
	if !ok {
		return "", "", ErrForeignTopic
	}
	id, kind, ok = strings.Cut(rest, "/")
	if !ok || id == "" || kind == "" {
		return "", "", ErrForeignTopic
	}
	return id, kind, nil
}

// ValidID reports whether s may be used as a proplet id: it must be a single
// topic level without MQTT wildcards.
func ValidID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
		default:
			return false
		}
	}
	return true
}
