package e2e

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/rest"
	"github.com/absmach/propeller/examples/exampletest"
	"github.com/absmach/propeller/test/harness"
)

var probeSeq atomic.Int64

// tryLogin logs in to the embedded broker as proplet id with secret, under
// a client id of its own ({id}:probe-N, so it never takes over the real
// proplet's session), and reports the broker's answer.
func tryLogin(s *harness.System, id, secret string) error {
	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + s.MQTTAddr).
		SetClientID(fmt.Sprintf("%s:probe-%d", id, probeSeq.Add(1))).
		SetUsername(id).SetPassword(secret).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second))
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return fmt.Errorf("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return err
	}
	c.Disconnect(0)
	return nil
}

func refusedLogin(id string) string {
	return `msg="mqtt login refused" reason="bad credentials" user=` + id
}

func waitNotAlive(t *testing.T, s *harness.System, id string) {
	t.Helper()
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		ps, err := s.ListProplets(ctx)
		if err != nil {
			return false
		}
		for _, p := range ps {
			if p.ID == id {
				return !p.Alive
			}
		}
		return true
	}, 30*time.Second, 20*time.Millisecond, "%s still alive", id)
}

// TestPropletCredentials issues per-proplet secrets over the REST API of a
// real manager and runs real proplets with them: a proplet joins with its
// own secret; another proplet's secret, the join token (for an id with its
// own secret), a rotated and a revoked secret are all refused; a rotated
// proplet that restarts with its new secret joins and runs a task.
func TestPropletCredentials(t *testing.T) {
	add := exampletest.Build(t, "add")
	ctx := context.Background()
	s := harness.NewSystem(t)
	s.StartManager()

	credA, err := s.Client.IssueCredential(ctx, "edge-a")
	require.NoError(t, err)
	credB, err := s.Client.IssueCredential(ctx, "edge-b")
	require.NoError(t, err)
	got, err := s.Client.GetCredential(ctx, "edge-a")
	require.NoError(t, err)
	require.Equal(t, rest.PropletCredential{PropletID: "edge-a", CreatedAt: credA.CreatedAt}, got)

	// edge-a joins with its own secret (the harness passes the join token
	// first; the later --token wins).
	oldA := s.StartProplet("edge-a", "--token", credA.Secret)
	s.WaitAlive("edge-a")

	// A proplet presenting another proplet's secret is refused, and so is
	// the join token for an id that has its own secret.
	impostor := s.StartProplet("edge-b", "--token", credA.Secret)
	require.Eventually(t, func() bool { return s.Manager.LogContains(refusedLogin("edge-b")) }, 20*time.Second, 20*time.Millisecond)
	require.Error(t, tryLogin(s, "edge-b", credA.Secret))
	require.Error(t, tryLogin(s, "edge-b", s.Token("edge-b")))
	require.Error(t, tryLogin(s, "edge-a", credB.Secret))
	require.NoError(t, tryLogin(s, "edge-b", credB.Secret))
	impostor.Kill()
	// Ids without a secret of their own still join with the join token.
	require.NoError(t, tryLogin(s, "edge-c", s.Token("edge-c")))

	// Rotate edge-a: the running proplet is disconnected at once, and its
	// reconnects with the old secret are refused.
	rotated, err := s.Client.IssueCredential(ctx, "edge-a")
	require.NoError(t, err)
	require.NotEqual(t, credA.Secret, rotated.Secret)
	require.Eventually(t, func() bool {
		return s.Manager.LogContains(`msg="mqtt proplet disconnected: credentials changed" user=edge-a`) &&
			s.Manager.LogContains(refusedLogin("edge-a"))
	}, 20*time.Second, 20*time.Millisecond)
	waitNotAlive(t, s, "edge-a")
	require.Error(t, tryLogin(s, "edge-a", credA.Secret), "the rotated-out secret")
	oldA.Kill()

	// Restarted with the new secret, edge-a joins and runs a task.
	s.StartProplet("edge-a", "--token", rotated.Secret)
	s.WaitAlive("edge-a")
	task := s.Create(rest.TaskRequest{Name: "add", File: add, Function: "add", Inputs: []float64{40, 2}, PropletID: "edge-a"})
	done := s.Wait(task.ID)
	require.Equal(t, "Succeeded", done.Phase, done.Message)
	require.Equal(t, []float64{42}, done.Results)

	// Revoke edge-b's secret: it no longer logs in.
	require.NoError(t, s.Client.RevokeCredential(ctx, "edge-b"))
	require.Error(t, tryLogin(s, "edge-b", credB.Secret), "a revoked secret")
	_, err = s.Client.GetCredential(ctx, "edge-b")
	require.True(t, rest.IsNotFound(err), "%v", err)
}

// TestRequirePropletCredentials: with --require-proplet-credentials the
// join token is refused for every id; issued secrets work.
func TestRequirePropletCredentials(t *testing.T) {
	ctx := context.Background()
	s := harness.NewSystem(t)
	s.StartManager("--require-proplet-credentials")

	s.StartProplet("edge-a") // the join token
	require.Eventually(t, func() bool { return s.Manager.LogContains(refusedLogin("edge-a")) }, 20*time.Second, 20*time.Millisecond)
	require.Error(t, tryLogin(s, "edge-z", s.Token("edge-z")))

	cred, err := s.Client.IssueCredential(ctx, "edge-b")
	require.NoError(t, err)
	s.StartProplet("edge-b", "--token", cred.Secret)
	s.WaitAlive("edge-b")

	// Revoking disconnects it, and with no join token to fall back on it
	// stays out.
	require.NoError(t, s.Client.RevokeCredential(ctx, "edge-b"))
	waitNotAlive(t, s, "edge-b")
	require.Error(t, tryLogin(s, "edge-b", cred.Secret))
}
