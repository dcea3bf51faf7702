package wire

import "strings"

// ClientIDSeparator separates a proplet id from an optional suffix in its
// MQTT client id. It is not a valid id character, so "a:x" can never be
// mistaken for a client id of proplet "a:x" or of a proplet named "a-x".
const ClientIDSeparator = ":"

// PropletClientID is the MQTT client id a proplet connects with. The
// embedded broker accepts only {id} or {id}:{suffix} for username {id}, so a
// proplet cannot take over another proplet's session.
func PropletClientID(id string) string { return id }

// OwnsClientID reports whether proplet id may connect with clientID.
func OwnsClientID(id, clientID string) bool {
	if clientID == id {
		return true
	}
	rest, ok := strings.CutPrefix(clientID, id+ClientIDSeparator)
	return ok && rest != ""
}
