package ocipush_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"oras.land/oras-go/v2/registry/remote/auth"

	"github.com/absmach/propeller/manager/ocipush"
	"github.com/absmach/propeller/test/ocitest"
)

// TestModelsFetch: a model pushed with any media type, to an open registry
// or to one demanding Basic auth, comes back byte for byte; a model over
// the size bound, a missing tag and a wrong password fail with reasons.
func TestModelsFetch(t *testing.T) {
	model := []byte("safetensors bytes, checked by the coordinator")

	open, err := ocipush.ParseRegistry("oci://" + ocitest.Serve(t, ocitest.Handler()) + "/models/digits")
	require.NoError(t, err)
	res, err := ocipush.Push(t.Context(), open, "v1", model, ocipush.Options{MediaType: "application/octet-stream"})
	require.NoError(t, err)
	for _, ref := range []string{open.String() + ":v1", res.Ref} {
		got, err := ocipush.Models{}.FetchModel(t.Context(), ref)
		require.NoError(t, err, ref)
		require.Equal(t, model, got)
	}
	_, err = ocipush.Models{MaxBytes: 8}.FetchModel(t.Context(), open.String()+":v1")
	require.ErrorContains(t, err, "more than 8")
	_, err = ocipush.Models{}.FetchModel(t.Context(), open.String()+":v2")
	require.ErrorContains(t, err, "v2")

	private, host := authRegistry(t)
	_, err = ocipush.Push(t.Context(), private, "v1", model, ocipush.Options{Credential: basicCred(testUser, testPassword)})
	require.NoError(t, err)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	writeFile(t, good, `{"auths":{"`+host+`":{"auth":"`+basic(testUser, testPassword)+`"}}}`)
	got, err := ocipush.Models{AuthFile: good}.FetchModel(t.Context(), private.String()+":v1")
	require.NoError(t, err)
	require.Equal(t, model, got)
	// The same file has no entry for the open registry: pulled anonymously.
	_, err = ocipush.Models{AuthFile: good}.FetchModel(t.Context(), open.String()+":v1")
	require.NoError(t, err)

	wrong := filepath.Join(dir, "wrong.json")
	writeFile(t, wrong, `{"auths":{"`+host+`":{"auth":"`+basic(testUser, "nope")+`"}}}`)
	_, err = ocipush.Models{AuthFile: wrong}.FetchModel(t.Context(), private.String()+":v1")
	require.ErrorContains(t, err, "refused the credentials")
	_, err = ocipush.Models{AuthFile: filepath.Join(dir, "missing.json")}.FetchModel(t.Context(), private.String()+":v1")
	require.ErrorContains(t, err, "missing.json")
}

func basicCred(user, password string) auth.CredentialFunc {
	return func(context.Context, string) (auth.Credential, error) {
		return auth.Credential{Username: user, Password: password}, nil
	}
}
