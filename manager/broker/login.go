package broker

import (
	"crypto/tls"
	"errors"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/absmach/propeller/api/wire"
)

// certID returns the proplet id a client proved with a certificate the
// listener verified against Config.TLS.ClientCAs (mutual TLS): the leaf's
// common name. "" when the connection carries no verified certificate.
func certID(cl *mqtt.Client) string {
	tc, ok := unwrapConn(cl.Net.Conn).(*tls.Conn)
	if !ok {
		return ""
	}
	st := tc.ConnectionState()
	if len(st.VerifiedChains) == 0 || len(st.VerifiedChains[0]) == 0 {
		return ""
	}
	return st.VerifiedChains[0][0].Subject.CommonName
}

// login checks a proplet's credential: its verified client certificate,
// when it presents one, else its password.
func (h *aclHook) login(cl *mqtt.Client, id string, password []byte) Login {
	if cn := certID(cl); cn != "" {
		// A certificate is the whole credential: its CN names the one id
		// it may log in as, whatever the password says.
		if cn == id {
			return LoginSecret
		}
		return LoginRefused
	}
	return h.creds.Check(id, string(password))
}

// claim is the connection that holds a client id, and the proplet instance
// (the random id of its process start, from its will) it says it is.
type claim struct {
	cl       *mqtt.Client
	instance string
}

// willInstance is the instance in a proplet's will (its offline status);
// "" when it has none or the will is no status.
func willInstance(pk packets.Packet) string {
	if !pk.Connect.WillFlag {
		return ""
	}
	var st wire.Status
	if wire.Decode(pk.Connect.WillPayload, &st) != nil {
		return ""
	}
	return st.Instance
}

// errDuplicate turns away a second proplet process for a connected id.
var errDuplicate = errors.New("broker: another proplet instance is connected with this client id")

// takeClientID claims cl.ID for cl, or refuses when another proplet
// process holds it. The rule: a connection may take over the session of a
// live connection with the same client id only if both carry the same
// instance (the proplet reconnecting after a network blip, before the
// broker noticed the old connection is gone); a different instance is a
// second process configured with the same id, and the two would otherwise
// take the session from each other on every reconnect. A connection
// without an instance (not a propeller proplet) keeps MQTT's takeover
// rule. An enrolment (enrolling: the join token with an Enroller) never
// takes over a live connection: whoever holds the join token must not
// inherit the session of a proplet that is enrolling. Claims are taken
// under one lock, before the session is attached, so two newcomers cannot
// both win.
func (h *aclHook) takeClientID(cl *mqtt.Client, pk packets.Packet, enrolling bool) error {
	inst := willInstance(pk)
	h.claimMu.Lock()
	defer h.claimMu.Unlock()
	if old, ok := h.claims[cl.ID]; ok && old.cl != cl && !old.cl.Closed() &&
		(enrolling || old.instance != "" && inst != "" && old.instance != inst) {
		return errDuplicate
	}
	h.claims[cl.ID] = claim{cl: cl, instance: inst}
	return nil
}

// releaseClientID ends cl's claim, if it still holds one.
func (h *aclHook) releaseClientID(cl *mqtt.Client) {
	h.claimMu.Lock()
	defer h.claimMu.Unlock()
	if c, ok := h.claims[cl.ID]; ok && c.cl == cl {
		delete(h.claims, cl.ID)
	}
}

// enroll issues a proplet that logged in with the join token its own
// secret and writes it to that connection alone: never routed, so neither
// another client nor the retained store sees it. QoS 0 is enough: a
// proplet that did not store it logs in with the join token again, which
// the pending secret still allows, and is enrolled again.
func (h *aclHook) enroll(cl *mqtt.Client, id string) {
	secret, err := h.enroller.Enroll(id)
	if err != nil {
		h.log.Error("mqtt proplet enrollment failed", "user", id, "error", err)
		return
	}
	payload, err := wire.Encode(&wire.Credential{ID: id, Secret: secret})
	if err != nil {
		h.log.Error("mqtt proplet enrollment failed", "user", id, "error", err)
		return
	}
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish},
		TopicName:   h.topics.Credential(id),
		Payload:     payload,
	}
	if err := cl.WritePacket(pk); err != nil {
		h.log.Warn("mqtt proplet enrollment not delivered; it enrolls again on its next login", "user", id, "error", err)
		return
	}
	h.log.Info("mqtt proplet enrolled: issued its own credential", "user", id, "client", cl.ID)
}
