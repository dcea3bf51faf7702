package standalone_test

import (
	"context"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/manager/broker"
	"github.com/absmach/propeller/standalone"
)

const joinToken = "join-token"

// credRig is an API with per-proplet credentials over a real
// broker.TokenCredentials, recording the disconnects it asks for.
type credRig struct {
	*apiRig
	dir  string
	auth *broker.TokenCredentials

	mu           sync.Mutex
	disconnected []string
}

func newCredRig(t *testing.T) *credRig {
	t.Helper()
	dir := t.TempDir()
	auth := broker.NewTokenCredentials(joinToken)
	r := &credRig{dir: dir, auth: auth}
	creds, err := standalone.OpenCredentials(filepath.Join(dir, standalone.CredentialsFile), auth, func(id string) int {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.disconnected = append(r.disconnected, id)
		return 1
	})
	require.NoError(t, err)
	r.apiRig = newAPIRig(t, creds)
	return r
}

func (r *credRig) disconnects() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.disconnected...)
}

func (r *credRig) issue(id string) (secret string, created time.Time) {
	r.t.Helper()
	code, body := r.json(http.MethodPost, "/v1/proplets/"+id+"/credentials", nil)
	require.Equal(r.t, http.StatusCreated, code, body)
	require.Equal(r.t, id, body["propletId"])
	secret, _ = body["secret"].(string)
	raw, err := hex.DecodeString(secret)
	require.NoError(r.t, err)
	require.Len(r.t, raw, 32, "a 256-bit secret")
	created, err = time.Parse(time.RFC3339, body["createdAt"].(string))
	require.NoError(r.t, err)
	return secret, created
}

// TestPropletCredentialsIssueRotateRevoke walks one proplet through issue,
// rotation and revocation, checking the broker's login check at each step.
func TestPropletCredentialsIssueRotateRevoke(t *testing.T) {
	r := newCredRig(t)

	// No credential yet: 404, and the join token works for the id.
	code, body := r.json(http.MethodGet, "/v1/proplets/edge-1/credentials", nil)
	require.Equal(t, http.StatusNotFound, code)
	require.Equal(t, "not-found", body["code"])
	require.Equal(t, `proplet "edge-1" has no credential`, body["detail"])
	require.True(t, (r.auth.Check("edge-1", joinToken) != broker.LoginRefused))

	// Issue: effective at once, for this id only, replacing the join token.
	s1, created := r.issue("edge-1")
	require.WithinDuration(t, time.Now(), created, 2*time.Second)
	require.True(t, (r.auth.Check("edge-1", s1) != broker.LoginRefused))
	require.False(t, (r.auth.Check("edge-1", joinToken) != broker.LoginRefused), "the join token no longer works for an id with its own secret")
	require.False(t, (r.auth.Check("edge-2", s1) != broker.LoginRefused), "a secret is good for its own id only")
	require.True(t, (r.auth.Check("edge-2", joinToken) != broker.LoginRefused))
	require.Equal(t, []string{"edge-1"}, r.disconnects())

	// GET says it exists and since when, never the secret.
	code, body = r.json(http.MethodGet, "/v1/proplets/edge-1/credentials", nil)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, map[string]any{"propletId": "edge-1", "createdAt": created.Format(time.RFC3339)}, body)

	// Only a digest is on disk.
	onDisk, err := os.ReadFile(filepath.Join(r.dir, standalone.CredentialsFile))
	require.NoError(t, err)
	require.NotContains(t, string(onDisk), s1)
	require.Contains(t, string(onDisk), hex.EncodeToString(broker.Digest(s1)))
	st, err := os.Stat(filepath.Join(r.dir, standalone.CredentialsFile))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	// Rotate: the old secret stops working, the proplet is disconnected.
	s2, _ := r.issue("edge-1")
	require.NotEqual(t, s1, s2)
	require.False(t, (r.auth.Check("edge-1", s1) != broker.LoginRefused))
	require.True(t, (r.auth.Check("edge-1", s2) != broker.LoginRefused))
	require.Equal(t, []string{"edge-1", "edge-1"}, r.disconnects())

	// A restarted manager loads the digests: the current secret still works.
	reloaded := broker.NewTokenCredentials(joinToken)
	_, err = standalone.OpenCredentials(filepath.Join(r.dir, standalone.CredentialsFile), reloaded, nil)
	require.NoError(t, err)
	require.True(t, (reloaded.Check("edge-1", s2) != broker.LoginRefused))
	require.False(t, (reloaded.Check("edge-1", s1) != broker.LoginRefused))
	require.False(t, (reloaded.Check("edge-1", joinToken) != broker.LoginRefused))

	// Revoke: the secret stops working, the proplet is disconnected, the
	// join token applies to the id again.
	code, body = r.json(http.MethodDelete, "/v1/proplets/edge-1/credentials", nil)
	require.Equal(t, http.StatusNoContent, code, body)
	require.False(t, (r.auth.Check("edge-1", s2) != broker.LoginRefused))
	require.True(t, (r.auth.Check("edge-1", joinToken) != broker.LoginRefused))
	require.Equal(t, []string{"edge-1", "edge-1", "edge-1"}, r.disconnects())
	code, _ = r.json(http.MethodGet, "/v1/proplets/edge-1/credentials", nil)
	require.Equal(t, http.StatusNotFound, code)
	code, body = r.json(http.MethodDelete, "/v1/proplets/edge-1/credentials", nil)
	require.Equal(t, http.StatusNotFound, code)
	require.Equal(t, "not-found", body["code"])
	require.Len(t, r.disconnects(), 3, "revoking nothing disconnects nobody")

	reloaded = broker.NewTokenCredentials(joinToken)
	_, err = standalone.OpenCredentials(filepath.Join(r.dir, standalone.CredentialsFile), reloaded, nil)
	require.NoError(t, err)
	require.False(t, (reloaded.Check("edge-1", s2) != broker.LoginRefused), "a revoked secret stays revoked across restarts")
}

// TestPropletCredentialsErrors checks that refusals are JSON errors like the
// rest of the API.
func TestPropletCredentialsErrors(t *testing.T) {
	r := newCredRig(t)
	long := strings.Repeat("a", 129)
	for _, m := range []string{http.MethodPost, http.MethodGet, http.MethodDelete} {
		// 401 without or with a wrong API token, before anything else.
		code, body := r.do(m, "/v1/proplets/edge-1/credentials", "", nil, "")
		require.Equal(t, http.StatusUnauthorized, code, m)
		require.Equal(t, "unauthorized", body["code"])
		require.Contains(t, body["detail"], "missing bearer token")
		code, body = r.do(m, "/v1/proplets/edge-1/credentials", "", nil, "Bearer "+joinToken)
		require.Equal(t, http.StatusUnauthorized, code, m)
		require.Equal(t, "unauthorized", body["code"])
		require.Equal(t, "invalid bearer token", body["detail"])

		// 400 for ids the broker would never accept as a proplet.
		for _, id := range []string{"bad%20id", "a+b", "a%2Fb", long, "propeller-manager", "propeller-manager-x"} {
			code, body = r.do(m, "/v1/proplets/"+id+"/credentials", "", nil, "Bearer "+token)
			require.Equal(t, http.StatusBadRequest, code, "%s %s: %v", m, id, body)
			require.Equal(t, "invalid-request", body["code"])
			require.Contains(t, body["detail"], "proplet id ")
		}
	}
	require.Empty(t, r.disconnects())

	// Unknown routes and methods: JSON like everywhere else.
	code, body := r.json(http.MethodGet, "/v1/proplets/edge-1/credentials/secret", nil)
	require.Equal(t, http.StatusNotFound, code)
	require.Equal(t, "not-found", body["code"])
	code, body = r.json(http.MethodPut, "/v1/proplets/edge-1/credentials", nil)
	require.Equal(t, http.StatusMethodNotAllowed, code)
	require.Equal(t, "method-not-allowed", body["code"])

	// The secret is never retrievable: not from GET, not from the list.
	secret, _ := r.issue("edge-1")
	for _, path := range []string{"/v1/proplets/edge-1/credentials", "/v1/proplets", "/v1/openapi.json"} {
		req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, r.srv.URL+path, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		raw := make([]byte, 1<<20)
		n, _ := resp.Body.Read(raw)
		resp.Body.Close()
		require.NotContains(t, string(raw[:n]), secret, path)
	}
}

// TestPropletCredentialsExternalBroker: without the embedded broker there
// is nothing to issue; the routes say so.
func TestPropletCredentialsExternalBroker(t *testing.T) {
	r := newAPIRig(t, nil)
	for _, m := range []string{http.MethodPost, http.MethodGet, http.MethodDelete} {
		code, body := r.json(m, "/v1/proplets/edge-1/credentials", nil)
		require.Equal(t, http.StatusNotImplemented, code, m)
		require.Equal(t, "not-implemented", body["code"])
		require.Contains(t, body["detail"], "per-proplet credentials are not available")
	}
}

// TestEnrolledCredentials: a secret enrolled over MQTT is on disk before
// the broker accepts it, pending (the join token still enrolls the id)
// until its first login, then the id's only credential, across restarts;
// the API rotates and revokes it like an issued one.
func TestEnrolledCredentials(t *testing.T) {
	r := newCredRig(t)
	path := filepath.Join(r.dir, standalone.CredentialsFile)
	reload := func() *broker.TokenCredentials {
		auth := broker.NewTokenCredentials(joinToken)
		_, err := standalone.OpenCredentialStore(path, auth)
		require.NoError(t, err)
		return auth
	}
	creds, err := standalone.OpenCredentials(path, r.auth, nil)
	require.NoError(t, err)

	s1, err := creds.Enroll("edge-9")
	require.NoError(t, err)
	require.Equal(t, broker.LoginPending, r.auth.Check("edge-9", s1))
	require.Equal(t, broker.LoginJoin, r.auth.Check("edge-9", joinToken), "pending: a proplet that lost the secret enrolls again")
	require.Equal(t, broker.LoginPending, reload().Check("edge-9", s1), "a pending secret survives a manager restart")
	onDisk, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NotContains(t, string(onDisk), s1)

	require.NoError(t, creds.Confirm("edge-9"))
	require.Equal(t, broker.LoginSecret, r.auth.Check("edge-9", s1))
	require.Equal(t, broker.LoginRefused, r.auth.Check("edge-9", joinToken), "the join token never logs an enrolled id in")
	reloaded := reload()
	require.Equal(t, broker.LoginSecret, reloaded.Check("edge-9", s1))
	require.Equal(t, broker.LoginRefused, reloaded.Check("edge-9", joinToken))
	_, err = creds.Enroll("edge-9")
	require.Error(t, err, "an enrollment never replaces a confirmed secret")

	got, err := creds.Get("edge-9")
	require.NoError(t, err)
	require.Equal(t, "edge-9", got.PropletID)
	// Revocation through the API: the id may enroll again.
	require.NoError(t, creds.Revoke("edge-9"))
	require.Equal(t, broker.LoginRefused, r.auth.Check("edge-9", s1))
	require.Equal(t, broker.LoginJoin, reload().Check("edge-9", joinToken))
}
