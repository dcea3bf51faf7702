package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/rest"
	"github.com/absmach/propeller/examples/exampletest"
	"github.com/absmach/propeller/standalone"
	"github.com/absmach/propeller/test/harness"
)

func runAdd(t *testing.T, s *harness.System, add []byte, id string) {
	t.Helper()
	task := s.Create(rest.TaskRequest{Name: "add", File: add, Function: "add", Inputs: []float64{40, 2}, PropletID: id})
	done := s.Wait(task.ID)
	require.Equal(t, "Succeeded", done.Phase, done.Message)
	require.Equal(t, []float64{42}, done.Results)
}

// TestPropletEnrollment runs real processes through a proplet's life with
// enrollment: the join token enrolls it once and stops working for its id;
// a second process with the id is refused while the first keeps running;
// a restart logs in with the stored secret; a rotation is explained by the
// proplet; after a revocation, removing the stored secret enrolls it again.
func TestPropletEnrollment(t *testing.T) {
	add := exampletest.Build(t, "add")
	ctx := context.Background()
	s := harness.NewSystem(t)
	s.StartManager()

	p := s.StartProplet("edge-e") // the join token
	s.WaitAlive("edge-e")
	credPath := filepath.Join(s.DataDir, "proplet-edge-e", "state", "credential")
	require.Eventually(t, func() bool {
		return s.Manager.LogContains(`msg="mqtt proplet enrollment confirmed: the join token no longer logs this id in" user=edge-e`)
	}, 30*time.Second, 20*time.Millisecond)
	st, err := os.Stat(credPath)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	raw, err := os.ReadFile(credPath)
	require.NoError(t, err)
	secret := strings.TrimSpace(string(raw))
	require.Len(t, secret, 64)
	onDisk, err := os.ReadFile(filepath.Join(s.DataDir, standalone.CredentialsFile))
	require.NoError(t, err)
	require.NotContains(t, string(onDisk), secret, "the manager keeps a digest only")
	require.Error(t, tryLogin(s, "edge-e", s.Token("edge-e")), "the join token no longer logs edge-e in")
	_, err = s.Client.GetCredential(ctx, "edge-e")
	require.NoError(t, err, "an enrolled secret is visible to the credentials API")
	runAdd(t, s, add, "edge-e")

	// A second process configured with the same id (even holding the
	// secret) is refused and says why; the first keeps its session.
	dup := s.StartProplet("edge-e", "--cache-dir", t.TempDir(), "--token", secret)
	require.Eventually(t, func() bool {
		return dup.LogContains("another proplet process is connected as edge-e") &&
			s.Manager.LogContains(`msg="mqtt login refused: another proplet instance is connected with this id" user=edge-e`)
	}, 30*time.Second, 20*time.Millisecond)
	runAdd(t, s, add, "edge-e")
	dup.Kill()

	// Restarted, it logs in with its stored secret.
	p.Kill()
	p = s.StartProplet("edge-e")
	s.WaitAlive("edge-e")
	runAdd(t, s, add, "edge-e")
	raw, err = os.ReadFile(credPath)
	require.NoError(t, err)
	require.Equal(t, secret, strings.TrimSpace(string(raw)), "no second enrollment")

	// Rotated over the API: the proplet is disconnected and explains.
	_, err = s.Client.IssueCredential(ctx, "edge-e")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return p.LogContains("the manager refused this proplet's credential (" + credPath + "); it was revoked or rotated")
	}, 30*time.Second, 20*time.Millisecond)
	waitNotAlive(t, s, "edge-e")

	// Revoked, and the stored secret removed as the message says: the
	// proplet enrolls again with the join token, without a restart.
	require.NoError(t, s.Client.RevokeCredential(ctx, "edge-e"))
	require.NoError(t, os.Remove(credPath))
	s.WaitAlive("edge-e")
	require.Eventually(t, func() bool {
		raw, err := os.ReadFile(credPath)
		return err == nil && len(strings.TrimSpace(string(raw))) == 64 && strings.TrimSpace(string(raw)) != secret
	}, 30*time.Second, 20*time.Millisecond)
	runAdd(t, s, add, "edge-e")
}

// TestPropletClientCertificate: with --tls-client-ca, a proplet logs in
// with a client certificate whose common name is its id, without a
// secret, and is not enrolled; the certificate does not log in any
// other id.
func TestPropletClientCertificate(t *testing.T) {
	add := exampletest.Build(t, "add")
	ca := harness.NewClientCA(t)
	s := harness.NewSystem(t).WithTLS(harness.SelfSignedTLS(t))
	s.StartManager("--tls-client-ca", ca.CA)

	c := ca.Issue(t, "edge-m")
	s.StartProplet("edge-m", "--tls-cert", c.Cert, "--tls-key", c.Key, "--token", "")
	s.WaitAlive("edge-m")
	runAdd(t, s, add, "edge-m")
	_, err := os.Stat(filepath.Join(s.DataDir, "proplet-edge-m", "state", "credential"))
	require.ErrorIs(t, err, os.ErrNotExist, "a certificate login is not enrolled")

	s.StartProplet("edge-y", "--tls-cert", c.Cert, "--tls-key", c.Key, "--token", "")
	require.Eventually(t, func() bool { return s.Manager.LogContains(refusedLogin("edge-y")) }, 30*time.Second, 20*time.Millisecond)
}
