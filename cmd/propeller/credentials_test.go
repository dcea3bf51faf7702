package main

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/rest"
	"github.com/absmach/propeller/manager/broker"
	restserver "github.com/absmach/propeller/manager/rest"
	"github.com/absmach/propeller/standalone"
)

// TestPropletCredentialsCommand runs `propeller proplet credentials
// create|get|revoke` against the REST API: the secret is printed by create
// only, and it works on the broker's check until revoked.
func TestPropletCredentialsCommand(t *testing.T) {
	auth := broker.NewTokenCredentials("join")
	creds, err := standalone.OpenCredentials(filepath.Join(t.TempDir(), standalone.CredentialsFile), auth, nil)
	require.NoError(t, err)
	api, err := restserver.New(restserver.Config{Auth: standalone.BearerToken("api"), Credentials: creds})
	require.NoError(t, err)
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)

	run := func(args ...string) (string, error) {
		root := newRootCommand()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(append([]string{"proplet", "credentials"}, append(args, "--server", srv.URL, "--token", "api")...))
		err := root.Execute()
		return out.String(), err
	}

	out, err := run("create", "edge-1", "-o", "json")
	require.NoError(t, err, out)
	var issued rest.IssuedCredential
	require.NoError(t, json.Unmarshal([]byte(out), &issued))
	require.Equal(t, "edge-1", issued.PropletID)
	require.Len(t, issued.Secret, 64)
	require.True(t, (auth.Check("edge-1", issued.Secret) != broker.LoginRefused))

	out, err = run("get", "edge-1")
	require.NoError(t, err, out)
	require.Contains(t, out, "edge-1")
	require.NotContains(t, out, issued.Secret)

	out, err = run("create", "edge-1")
	require.NoError(t, err, out)
	require.NotContains(t, out, issued.Secret, "a rotation prints a new secret")
	require.False(t, (auth.Check("edge-1", issued.Secret) != broker.LoginRefused))

	out, err = run("revoke", "edge-1")
	require.NoError(t, err, out)
	_, err = run("get", "edge-1")
	require.ErrorContains(t, err, "404")
	_, err = run("create", "bad id")
	require.ErrorContains(t, err, `400 invalid-request: proplet id "bad id"`)
}
