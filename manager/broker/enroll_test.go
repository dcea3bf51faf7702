package broker_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/manager/broker"
	"github.com/absmach/propeller/test/harness"
	"github.com/absmach/propeller/test/mqtttest"
)

const joinToken = "join-token"

// memEnroller is a broker.Enroller over TokenCredentials, counting what
// it did; the standalone manager's is the same with a file behind it.
type memEnroller struct {
	auth *broker.TokenCredentials

	mu        sync.Mutex
	enrolled  int
	confirmed int
}

func (e *memEnroller) Enroll(id string) (string, error) {
	s, err := broker.NewSecret()
	if err != nil {
		return "", err
	}
	if err := e.auth.PendingDigest(id, broker.Digest(s)); err != nil {
		return "", err
	}
	e.mu.Lock()
	e.enrolled++
	e.mu.Unlock()
	return s, nil
}

func (e *memEnroller) Confirm(id string) error {
	if e.auth.Confirm(id) {
		e.mu.Lock()
		e.confirmed++
		e.mu.Unlock()
	}
	return nil
}

func (e *memEnroller) counts() (enrolled, confirmed int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.enrolled, e.confirmed
}

func enrollingBroker(t *testing.T, tlsCfg *tls.Config) (*broker.Broker, *memEnroller) {
	t.Helper()
	auth := broker.NewTokenCredentials(joinToken)
	e := &memEnroller{auth: auth}
	b, err := broker.New(broker.Config{
		Addr: "127.0.0.1:0", TLS: tlsCfg,
		ManagerUser: mqtttest.ManagerUser, ManagerSecret: mqtttest.ManagerSecret,
		Authenticator: auth, Enroller: e, Logger: mqtttest.Logger(),
	})
	require.NoError(t, err)
	require.NoError(t, b.Start())
	t.Cleanup(func() { _ = b.Close() })
	return b, e
}

type client struct {
	paho.Client
	creds chan wire.Credential
}

type dialOpts struct {
	password, instance string
	tls                *tls.Config
}

// dial logs in as id with the proplet's client id, a will carrying
// instance (when set) and a route for the credential message, as the
// proplet agent does.
func dial(t *testing.T, addr, id string, o dialOpts) (*client, error) {
	t.Helper()
	scheme := "tcp://"
	if o.tls != nil {
		scheme = "ssl://"
	}
	opts := paho.NewClientOptions().AddBroker(scheme + addr).
		SetClientID(wire.PropletClientID(id)).SetUsername(id).SetPassword(o.password).
		SetCleanSession(false).SetAutoReconnect(false).SetConnectTimeout(10 * time.Second)
	if o.tls != nil {
		opts.SetTLSConfig(o.tls)
	}
	if o.instance != "" {
		will, err := wire.Encode(&wire.Status{ID: id, State: wire.StateOffline, Instance: o.instance})
		require.NoError(t, err)
		opts.SetBinaryWill(topics.Status(id), will, 1, true)
	}
	c := &client{Client: paho.NewClient(opts), creds: make(chan wire.Credential, 4)}
	c.AddRoute(topics.Credential(id), func(_ paho.Client, m paho.Message) {
		var cr wire.Credential
		if wire.Decode(m.Payload(), &cr) == nil {
			c.creds <- cr
		}
	})
	tok := c.Connect()
	require.True(t, tok.WaitTimeout(10*time.Second), "connect timed out")
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c, nil
}

func (c *client) credential(t *testing.T) wire.Credential {
	t.Helper()
	select {
	case cr := <-c.creds:
		return cr
	case <-time.After(10 * time.Second):
		t.Fatal("no credential issued")
		return wire.Credential{}
	}
}

// TestJoinTokenOnlyEnrolls: the join token logs an unknown id in once and
// gets it its own secret; once the proplet logged in with that secret, the
// join token no longer logs the id in (before enrollment existed, it did:
// whoever held the join token could take over any proplet).
func TestJoinTokenOnlyEnrolls(t *testing.T) {
	b, e := enrollingBroker(t, nil)
	first, err := dial(t, b.Addr(), "p1", dialOpts{password: joinToken, instance: "i1"})
	require.NoError(t, err)
	cr := first.credential(t)
	require.Equal(t, "p1", cr.ID)
	require.Len(t, cr.Secret, 64)

	// Pending: a proplet that crashed before storing the secret enrolls
	// again with the join token (the first connection is gone).
	first.Disconnect(0)
	again, err := redial(t, b.Addr(), "p1", dialOpts{password: joinToken, instance: "i2"})
	require.NoError(t, err)
	cr2 := again.credential(t)
	require.NotEqual(t, cr.Secret, cr2.Secret)
	again.Disconnect(0)
	_, err = redial(t, b.Addr(), "p1", dialOpts{password: cr.Secret, instance: "i2"})
	require.ErrorIs(t, err, errRefused, "a re-enrollment replaces the pending secret")

	// The first login with the secret confirms it: no credential again.
	own, err := redial(t, b.Addr(), "p1", dialOpts{password: cr2.Secret, instance: "i2"})
	require.NoError(t, err)
	require.Eventually(t, func() bool { _, c := e.counts(); return c == 1 }, 10*time.Second, 10*time.Millisecond)
	own.Disconnect(0)
	_, err = redial(t, b.Addr(), "p1", dialOpts{password: joinToken, instance: "i3"})
	require.ErrorIs(t, err, errRefused, "the join token never logs an enrolled id in")
	_, err = redial(t, b.Addr(), "p1", dialOpts{password: cr2.Secret, instance: "i3"})
	require.NoError(t, err)
	enrolled, _ := e.counts()
	require.Equal(t, 2, enrolled)

	// A secret is good for its own id only, and is never sent to others.
	_, err = redial(t, b.Addr(), "p2", dialOpts{password: cr2.Secret, instance: "j"})
	require.ErrorIs(t, err, errRefused)
}

// TestEnrollmentIsPrivate: the issued secret goes to the enrolling
// connection only; the manager's wildcard subscription never sees it.
func TestEnrollmentIsPrivate(t *testing.T) {
	b, _ := enrollingBroker(t, nil)
	env := mqtttest.Env{Name: "enrolling", URL: "mqtt://" + b.Addr(), Secret: func(string) string { return joinToken }}
	all := observer(t, env)
	p, err := dial(t, b.Addr(), "p1", dialOpts{password: joinToken, instance: "i1"})
	require.NoError(t, err)
	cr := p.credential(t)
	// Positive control: a message published after the enrollment reaches
	// the observer, and nothing before it carried the secret.
	tok := p.Publish(topics.Heartbeat("p1"), 1, false, []byte("after"))
	require.True(t, tok.WaitTimeout(10*time.Second))
	require.NoError(t, tok.Error())
	waitFor(t, all, topics.Heartbeat("p1"), func(m paho.Message) bool {
		return m.Topic() == topics.Credential("p1") || strings.Contains(string(m.Payload()), cr.Secret)
	})
	// Nobody may subscribe to a credential topic, not even its proplet.
	sub := p.Subscribe(topics.Credential("p1"), 1, nil)
	require.True(t, sub.WaitTimeout(10*time.Second))
	require.Equal(t, byte(0x80), sub.(*paho.SubscribeToken).Result()[topics.Credential("p1")])
}

// TestSecondInstanceRefused: a second proplet process with a connected id
// is refused with "identifier rejected" and the first keeps its
// connection; the same instance reconnecting (a network blip) still takes
// its own session over.
func TestSecondInstanceRefused(t *testing.T) {
	b, _ := enrollingBroker(t, nil)
	first, err := dial(t, b.Addr(), "p1", dialOpts{password: joinToken, instance: "i1"})
	require.NoError(t, err)
	secret := first.credential(t).Secret
	first.Disconnect(0)
	first, err = redial(t, b.Addr(), "p1", dialOpts{password: secret, instance: "i1"})
	require.NoError(t, err)

	_, err = dial(t, b.Addr(), "p1", dialOpts{password: secret, instance: "i2"})
	require.ErrorIs(t, err, packets.ErrorRefusedIDRejected)
	require.True(t, first.IsConnectionOpen(), "the connected proplet keeps its session")

	again, err := dial(t, b.Addr(), "p1", dialOpts{password: secret, instance: "i1"})
	require.NoError(t, err, "the same instance takes its own session over")
	require.Eventually(t, func() bool { return !first.IsConnectionOpen() }, 10*time.Second, 10*time.Millisecond)
	require.True(t, again.IsConnectionOpen())
}

// TestEnrollingNeverTakesOver: the join token cannot take over the
// session of an id that is connected, whatever instance it claims.
func TestEnrollingNeverTakesOver(t *testing.T) {
	b, _ := enrollingBroker(t, nil)
	first, err := dial(t, b.Addr(), "p1", dialOpts{password: joinToken, instance: "i1"})
	require.NoError(t, err)
	first.credential(t)
	for _, inst := range []string{"i1", "other", ""} {
		_, err = dial(t, b.Addr(), "p1", dialOpts{password: joinToken, instance: inst})
		require.ErrorIs(t, err, packets.ErrorRefusedIDRejected, "instance %q", inst)
	}
	require.True(t, first.IsConnectionOpen())
}

// TestClientCertificateLogin: with a client CA, a certificate whose common
// name is the proplet id logs that id in without a password, and no other.
func TestClientCertificateLogin(t *testing.T) {
	server := harness.SelfSignedTLS(t)
	ca := harness.NewClientCA(t)
	cert, err := tls.LoadX509KeyPair(server.Cert, server.Key)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(ca.CA)
	require.NoError(t, err)
	require.True(t, pool.AppendCertsFromPEM(pem))
	b, e := enrollingBroker(t, &tls.Config{
		Certificates: []tls.Certificate{cert}, ClientCAs: pool,
		ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12,
	})
	roots := x509.NewCertPool()
	spem, err := os.ReadFile(server.CA)
	require.NoError(t, err)
	require.True(t, roots.AppendCertsFromPEM(spem))
	clientTLS := func(f *harness.TLSFiles) *tls.Config {
		c := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		if f != nil {
			kp, err := tls.LoadX509KeyPair(f.Cert, f.Key)
			require.NoError(t, err)
			c.Certificates = []tls.Certificate{kp}
		}
		return c
	}
	p1 := ca.Issue(t, "p1")
	addr := b.Addr()

	c, err := dial(t, addr, "p1", dialOpts{tls: clientTLS(&p1), instance: "i1"})
	require.NoError(t, err, "the certificate is the credential")
	tok := c.Publish(topics.Heartbeat("p1"), 1, false, []byte("{}"))
	require.True(t, tok.WaitTimeout(10*time.Second))
	require.NoError(t, tok.Error())
	c.Disconnect(0)

	_, err = dial(t, addr, "p2", dialOpts{tls: clientTLS(&p1), instance: "i1", password: joinToken})
	require.ErrorIs(t, err, errRefused, "a certificate logs in its own id only, the join token does not help")
	_, err = dial(t, addr, "p3", dialOpts{tls: clientTLS(nil)})
	require.ErrorIs(t, err, errRefused, "no certificate, no password")
	enrolled, _ := e.counts()
	require.Zero(t, enrolled, "certificate logins are not enrolled")

	// A certificate from another CA is refused at the handshake.
	other := harness.NewClientCA(t).Issue(t, "p1")
	_, err = redial(t, addr, "p1", dialOpts{tls: clientTLS(&other)})
	require.Error(t, err)
}

// errRefused is how a refused login reaches an MQTT 3.1.1 client: mochi
// answers "bad username or password" as return code 5, not authorized.
var errRefused = packets.ErrorRefusedNotAuthorised

// redial is dial after a disconnect: until the broker has processed the
// old connection's DISCONNECT, a new instance or an enrolment is refused
// as a second process, so retry on exactly that refusal.
func redial(t *testing.T, addr, id string, o dialOpts) (*client, error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := dial(t, addr, id, o)
		if !errors.Is(err, packets.ErrorRefusedIDRejected) || time.Now().After(deadline) {
			return c, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}
