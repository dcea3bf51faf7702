// Package broker embeds an MQTT broker (mochi-mqtt) that authenticates the
// manager and proplets and confines every proplet to its own topic subtree.
package broker

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/absmach/propeller/api/wire"
)

// Config configures the embedded broker.
type Config struct {
	// Addr is the TCP listen address, e.g. ":1883" or "127.0.0.1:0".
	Addr string
	// TLS, when set, makes the listener speak TLS only. With ClientCAs
	// and ClientAuth tls.VerifyClientCertIfGiven, a proplet may log in
	// with a client certificate instead of a password: its common name
	// is the proplet id.
	TLS *tls.Config
	// Prefix is the topic prefix; empty means wire.DefaultPrefix.
	Prefix string
	// ManagerUser and ManagerSecret are the manager's own login; it may
	// publish and subscribe anywhere.
	ManagerUser   string
	ManagerSecret string
	// Authenticator checks proplet logins (username = proplet id).
	Authenticator Credentials
	// Enroller, when set, makes the join token enrolment only: a proplet
	// logging in with it is issued its own secret (see Enroller).
	Enroller Enroller
	// SessionExpiry bounds how long a disconnected persistent session
	// (subscriptions + queued QoS 1 messages) is kept; 0 means 24h.
	SessionExpiry time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// HoldProplets makes the broker answer proplets "server unavailable"
	// until AdmitProplets is called. A freshly started embedded broker has
	// no sessions: a proplet reconnecting before the manager subscribed
	// would publish its queued results to nobody. Proplets retry with
	// backoff, so holding them costs a few seconds, never a result.
	HoldProplets bool
	// Limits bound packet sizes, before login and per topic after it.
	Limits Limits
}

// Broker is a running embedded MQTT broker.
type Broker struct {
	hook      *aclHook
	srv       *mqtt.Server
	ln        *trackedListener
	log       *slog.Logger
	closeOnce sync.Once
	limits    Limits
	// dropped counts publishes over their topic's limit; refused counts
	// connections whose CONNECT was too large or not a CONNECT.
	dropped, refused atomic.Uint64

	mu     sync.Mutex
	closed bool
	conns  int // connections being served
}

// New validates cfg and binds the listener, so Addr is known before Start.
func New(cfg Config) (*Broker, error) {
	if cfg.ManagerUser == "" || cfg.ManagerSecret == "" {
		return nil, errors.New("broker: manager user and secret are required")
	}
	if cfg.Authenticator == nil {
		return nil, errors.New("broker: authenticator is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.SessionExpiry <= 0 {
		cfg.SessionExpiry = 24 * time.Hour
	}
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumSessionExpiryInterval = uint32(cfg.SessionExpiry / time.Second)
	// Proplets talk only to the manager; shared subscriptions would let a
	// proplet's filter escape the per-id ACL reasoning, so turn them off.
	caps.SharedSubAvailable = 0
	limits := cfg.Limits.withDefaults()
	caps.MaximumPacketSize = limits.packetMax()
	srv := mqtt.New(&mqtt.Options{
		Capabilities: caps,
		Logger:       cfg.Logger.With("component", "mqtt-broker"),
		// $SYS is not readable by proplets anyway; publish it rarely.
		SysTopicResendInterval: 60,
	})
	h := &aclHook{
		topics:   wire.Topics{Prefix: cfg.Prefix},
		manager:  cfg.ManagerUser,
		secret:   cfg.ManagerSecret,
		creds:    cfg.Authenticator,
		enroller: cfg.Enroller,
		srv:      srv,
		log:      cfg.Logger,
		claims:   make(map[string]claim),
	}
	h.held.Store(cfg.HoldProplets)
	if err := srv.AddHook(h, nil); err != nil {
		return nil, fmt.Errorf("broker: add auth hook: %w", err)
	}
	if err := srv.AddHook(newHandoverHook(cfg.Logger), nil); err != nil {
		return nil, fmt.Errorf("broker: add session handover hook: %w", err)
	}
	b := &Broker{hook: h, srv: srv, log: cfg.Logger, limits: limits}
	if err := srv.AddHook(&sizeHook{limits: limits, topics: h.topics, manager: cfg.ManagerUser, log: cfg.Logger, dropped: &b.dropped}, nil); err != nil {
		return nil, fmt.Errorf("broker: add size hook: %w", err)
	}
	b.ln = &trackedListener{TCP: listeners.NewTCP(listeners.Config{ID: "propeller", Address: cfg.Addr, TLSConfig: cfg.TLS}), b: b}
	if err := srv.AddListener(b.ln); err != nil {
		return nil, fmt.Errorf("broker: listen on %s: %w", cfg.Addr, err)
	}
	return b, nil
}

// trackedListener orders every connection's end before Close. mochi adds
// each connection to a WaitGroup that Server.Close waits on, without a
// happens-before edge between the two (a data race under -race); taking
// b.mu after each connection and in Close provides that edge.
type trackedListener struct {
	*listeners.TCP
	b *Broker
}

func (l *trackedListener) Serve(establish listeners.EstablishFn) {
	l.TCP.Serve(func(id string, c net.Conn) error {
		l.b.mu.Lock()
		closed := l.b.closed
		if !closed {
			l.b.conns++
		}
		l.b.mu.Unlock()
		if closed {
			return c.Close()
		}
		defer func() {
			l.b.mu.Lock()
			l.b.conns--
			l.b.mu.Unlock()
		}()
		admitted, err := admitConnect(c, l.b.limits.Connect)
		if err != nil {
			l.b.refused.Add(1)
			l.b.log.Warn("mqtt connection refused before login", "remote", c.RemoteAddr().String(), "error", err)
			return c.Close()
		}
		l.b.mu.Lock()
		closed = l.b.closed
		l.b.mu.Unlock()
		if closed {
			return c.Close()
		}
		return establish(id, admitted)
	})
}

// Oversized reports how many connections were refused for their CONNECT
// (too large, or not a CONNECT) and how many publishes were dropped for
// exceeding their topic's limit.
func (b *Broker) Oversized() (connects, publishes uint64) {
	return b.refused.Load(), b.dropped.Load()
}

// AdmitProplets ends HoldProplets: proplets may connect from now on.
func (b *Broker) AdmitProplets() { b.hook.held.Store(false) }

// DisconnectProplet closes every connection logged in as proplet id and
// returns how many there were. Call it after rotating or revoking the
// proplet's secret: the credentials are checked only at login, so without
// this a connected proplet would keep its session on the old secret. Its
// reconnects then go through the new check; its last will is published as
// for any dropped connection.
func (b *Broker) DisconnectProplet(id string) int {
	if id == b.hook.manager {
		return 0
	}
	n := 0
	for _, cl := range b.srv.Clients.GetAll() {
		if string(cl.Properties.Username) == id && !cl.Closed() {
			b.hook.disconnect(cl)
			n++
		}
	}
	if n > 0 {
		b.log.Info("mqtt proplet disconnected: credentials changed", "user", id, "connections", n)
	}
	return n
}

// Start begins accepting clients; it does not block.
func (b *Broker) Start() error {
	if err := b.srv.Serve(); err != nil {
		return fmt.Errorf("broker: serve: %w", err)
	}
	return nil
}

// Addr is the address the listener is bound to (with the real port when
// Config.Addr used port 0).
func (b *Broker) Addr() string { return b.ln.Address() }

// Close disconnects all clients and stops the listener. Clients' last-wills
// are published as their connections drop.
func (b *Broker) Close() error {
	var err error
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		b.mu.Unlock()
		err = b.srv.Close()
	})
	return err
}

// Kinds a proplet may publish to, and subscribe to, in its own subtree.
var (
	propletWrites = map[string]bool{
		wire.KindStatus:          true,
		wire.KindHeartbeat:       true,
		wire.KindEvents:          true,
		wire.KindFLUpdates:       true,
		wire.KindArtifactRequest: true,
	}
	propletReads = map[string]bool{
		wire.KindCommands:       true,
		wire.KindArtifactChunks: true,
	}
)

type aclHook struct {
	mqtt.HookBase
	held     atomic.Bool
	topics   wire.Topics
	manager  string
	secret   string
	creds    Credentials
	enroller Enroller
	srv      *mqtt.Server
	log      *slog.Logger

	claimMu sync.Mutex
	claims  map[string]claim // client id -> the proplet connection holding it
}

func (h *aclHook) ID() string { return "propeller-acl" }

func (h *aclHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnSessionEstablished, mqtt.OnDisconnect:
		return true
	}
	return false
}

// OnSessionEstablished checks a proplet's credentials once more, now that
// it is in the client list: a secret rotated or revoked between the login
// check and here is caught either by this check or by DisconnectProplet's
// scan of the list, never by neither. It then confirms a pending enrolled
// secret on its first login, or enrolls a proplet that used the join token.
func (h *aclHook) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	user := string(cl.Properties.Username)
	if user == h.manager {
		return
	}
	switch h.login(cl, user, pk.Connect.Password) {
	case LoginRefused:
		h.log.Warn("mqtt proplet disconnected: credentials changed while logging in", "user", user, "client", cl.ID)
		h.disconnect(cl)
	case LoginPending:
		if h.enroller == nil {
			return
		}
		if err := h.enroller.Confirm(user); err != nil {
			// The login stands; the next one confirms.
			h.log.Error("mqtt proplet enrollment not confirmed", "user", user, "error", err)
			return
		}
		h.log.Info("mqtt proplet enrollment confirmed: the join token no longer logs this id in", "user", user)
	case LoginJoin:
		if h.enroller != nil {
			h.enroll(cl, user)
		}
	case LoginSecret:
	}
}

func (h *aclHook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) { h.releaseClientID(cl) }

// disconnect ends one client's connection: MQTT 5 clients are told why
// (administrative action), MQTT 3.1.1 has no server DISCONNECT.
func (h *aclHook) disconnect(cl *mqtt.Client) {
	if cl.Properties.ProtocolVersion >= 5 {
		_ = h.srv.DisconnectClient(cl, packets.ErrAdministrativeAction)
		return
	}
	cl.Stop(packets.ErrNotAuthorized)
}

// errHeld rejects a proplet while the broker holds them back.
var errHeld = errors.New("broker: proplets are held until the manager is subscribed")

// OnConnect turns proplets away, with a retryable code, while held, and
// a second proplet process for a client id that is connected (see
// takeClientID). The duplicate check runs only for a login that would
// succeed, so an unauthenticated client learns nothing about who is
// connected; OnConnectAuthenticate refuses the others.
func (h *aclHook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	user := string(cl.Properties.Username)
	if user == h.manager {
		return nil
	}
	if h.held.Load() {
		code := packets.ErrServerUnavailable
		if cl.Properties.ProtocolVersion >= 5 {
			code = packets.ErrServerBusy
		}
		_ = h.srv.SendConnack(cl, code, false, nil)
		return errHeld
	}
	if h.refuseProplet(cl, pk, user) != "" {
		return nil
	}
	enrolling := h.enroller != nil && h.login(cl, user, pk.Connect.Password) == LoginJoin
	if err := h.takeClientID(cl, pk, enrolling); err != nil {
		h.log.Warn("mqtt login refused: another proplet instance is connected with this id", "user", user, "client", cl.ID, "remote", cl.Net.Remote)
		// MQTT 3.1.1 says "identifier rejected", MQTT 5 "client
		// identifier not valid": the refused proplet names the reason.
		_ = h.srv.SendConnack(cl, packets.ErrClientIdentifierNotValid, false, nil)
		return err
	}
	return nil
}

func (h *aclHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	user := string(cl.Properties.Username)
	if user == h.manager {
		if !secretEqual(pk.Connect.Password, h.secret) {
			h.log.Warn("mqtt login refused: bad manager secret", "client", cl.ID, "remote", cl.Net.Remote)
			return false
		}
		return true
	}
	if reason := h.refuseProplet(cl, pk, user); reason != "" {
		h.log.Warn("mqtt login refused", "reason", reason, "user", user, "client", cl.ID, "remote", cl.Net.Remote)
		return false
	}
	return true
}

// refuseProplet returns why a proplet login is refused, or "".
func (h *aclHook) refuseProplet(cl *mqtt.Client, pk packets.Packet, id string) string {
	if !wire.ValidID(id) {
		return "username is not a valid proplet id"
	}
	// Client ids select sessions: a login with someone else's client id
	// would kick that client off and inherit its session.
	if !wire.OwnsClientID(id, cl.ID) || strings.HasPrefix(cl.ID, wire.ManagerClientID) {
		return "client id does not belong to the user"
	}
	if existing, ok := h.srv.Clients.Get(cl.ID); ok && !bytes.Equal(existing.Properties.Username, cl.Properties.Username) {
		return "client id is held by another user"
	}
	if h.login(cl, id, pk.Connect.Password) == LoginRefused {
		return "bad credentials"
	}
	// The broker publishes a will on the client's behalf without an ACL
	// check, so the will topic must pass the same rule as a publish.
	if pk.Connect.WillFlag && !h.propletMay(id, pk.Connect.WillTopic, true) {
		return "will topic outside the proplet's subtree"
	}
	return ""
}

func (h *aclHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	user := string(cl.Properties.Username)
	if user == h.manager {
		return true
	}
	ok := h.propletMay(user, topic, write)
	if !ok {
		h.log.Warn("mqtt acl denied", "user", user, "client", cl.ID, "topic", topic, "write", write)
	}
	return ok
}

// propletMay applies the subtree rule. topic may be a subscription filter:
// a wildcard in the id or kind position never matches a literal id or kind,
// so filters that could cross proplets are refused.
func (h *aclHook) propletMay(id, topic string, write bool) bool {
	pid, kind, err := h.topics.Parse(topic)
	if err != nil || pid != id {
		return false
	}
	if write {
		return propletWrites[kind]
	}
	return propletReads[kind]
}
