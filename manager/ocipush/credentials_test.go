package ocipush_test

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"oras.land/oras-go/v2/registry/remote/auth"

	"github.com/absmach/propeller/manager/ocipush"
	"github.com/absmach/propeller/test/ocitest"
)

const (
	testUser     = "robot$propeller"
	testPassword = "s3cret:with-colon"
)

// serveAuthRegistry runs an in-process OCI registry on loopback that
// demands HTTP Basic auth as user:password, answering 401 with a Basic
// challenge otherwise, as Harbor or a cluster registry with htpasswd do.
func serveAuthRegistry(t *testing.T, user, password string) string {
	t.Helper()
	return ocitest.Serve(t, ocitest.WithBasicAuth(ocitest.Handler(), user, password))
}

func basic(user, password string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
}

func authRegistry(t *testing.T) (ocipush.Registry, string) {
	t.Helper()
	host := serveAuthRegistry(t, testUser, testPassword)
	reg, err := ocipush.ParseRegistry("oci://" + host + "/propeller/checkpoints")
	require.NoError(t, err)
	return reg, host
}

// TestPushWithDockerConfigCredentials: a registry that demands Basic auth
// takes a push with the credentials of a Docker config.json, in each of
// its forms; the artifact pulls back with them to the same digest.
func TestPushWithDockerConfigCredentials(t *testing.T) {
	reg, host := authRegistry(t)
	dir := t.TempDir()
	for name, cfg := range map[string]string{
		"auth":              `{"auths":{"` + host + `":{"auth":"` + basic(testUser, testPassword) + `"}}}`,
		"username-password": `{"auths":{"` + host + `":{"username":"` + testUser + `","password":"` + testPassword + `"}}}`,
		"scheme-in-key":     `{"auths":{"http://` + host + `/":{"auth":"` + basic(testUser, testPassword) + `"}},"other":1}`,
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name+".json")
			writeFile(t, path, cfg)
			cred, err := ocipush.DockerConfigCredential(path, reg)
			require.NoError(t, err)
			data := []byte("model " + name)
			res, err := ocipush.Push(t.Context(), reg, "job-round-1", data, ocipush.Options{Credential: cred})
			require.NoError(t, err)
			require.Equal(t, sha(data), res.Layer)

			got, layer, err := ocipush.Pull(t.Context(), res.Ref, ocipush.Options{Credential: cred})
			require.NoError(t, err)
			require.Equal(t, data, got)
			require.Equal(t, sha(data), layer)
		})
	}
}

// TestPushWithoutOrWrongCredentialsFails: no credentials, or a wrong
// password, fail the push with an error naming the registry's 401.
func TestPushWithoutOrWrongCredentialsFails(t *testing.T) {
	reg, host := authRegistry(t)
	_, err := ocipush.Push(t.Context(), reg, "job-round-1", []byte("x"), ocipush.Options{})
	require.ErrorContains(t, err, "401 Unauthorized")
	require.ErrorContains(t, err, host)
	require.ErrorIs(t, err, auth.ErrBasicCredentialNotFound)

	path := filepath.Join(t.TempDir(), "config.json")
	writeFile(t, path, `{"auths":{"`+host+`":{"auth":"`+basic(testUser, "wrong")+`"}}}`)
	cred, err := ocipush.DockerConfigCredential(path, reg)
	require.NoError(t, err)
	_, err = ocipush.Push(t.Context(), reg, "job-round-1", []byte("x"), ocipush.Options{Credential: cred})
	require.ErrorContains(t, err, "401")
	require.ErrorContains(t, err, "refused the credentials")
	t.Log(err)

	// A credential for another host is not sent here.
	other, err := ocipush.ParseRegistry("oci://registry.example.com/propeller/checkpoints")
	require.NoError(t, err)
	writeFile(t, path, `{"auths":{"registry.example.com":{"auth":"`+basic(testUser, testPassword)+`"}}}`)
	cred, err = ocipush.DockerConfigCredential(path, other)
	require.NoError(t, err)
	_, err = ocipush.Push(t.Context(), reg, "job-round-1", []byte("x"), ocipush.Options{Credential: cred})
	require.ErrorContains(t, err, "401")
}

// TestDockerConfigCredentialReread: the file is read on each call, so a
// rewritten (rotated) file takes effect at the next push.
func TestDockerConfigCredentialReread(t *testing.T) {
	reg, host := authRegistry(t)
	path := filepath.Join(t.TempDir(), "config.json")
	writeFile(t, path, `{"auths":{"`+host+`":{"auth":"`+basic(testUser, "old")+`"}}}`)
	cred, err := ocipush.DockerConfigCredential(path, reg)
	require.NoError(t, err)
	_, err = ocipush.Push(t.Context(), reg, "job-round-1", []byte("x"), ocipush.Options{Credential: cred})
	require.ErrorContains(t, err, "401")

	writeFile(t, path, `{"auths":{"`+host+`":{"auth":"`+basic(testUser, testPassword)+`"}}}`)
	cred, err = ocipush.DockerConfigCredential(path, reg)
	require.NoError(t, err)
	_, err = ocipush.Push(t.Context(), reg, "job-round-1", []byte("x"), ocipush.Options{Credential: cred})
	require.NoError(t, err)
}

// TestDockerConfigCredentialRefusesBadFiles: a missing, unreadable or
// malformed file, or one without a credential for the registry, is an
// error naming the file.
func TestDockerConfigCredentialRefusesBadFiles(t *testing.T) {
	reg, err := ocipush.ParseRegistry("oci://harbor.example.com:8443/propeller/checkpoints")
	require.NoError(t, err)
	dir := t.TempDir()
	_, err = ocipush.DockerConfigCredential(filepath.Join(dir, "missing.json"), reg)
	require.ErrorContains(t, err, "missing.json")
	require.ErrorIs(t, err, os.ErrNotExist)
	_, err = ocipush.DockerConfigCredential(dir, reg)
	require.ErrorContains(t, err, dir, "a directory is not a config file")

	for name, cfg := range map[string]string{
		"not-json":     `{"auths":`,
		"empty":        ``,
		"no-auths":     `{}`,
		"auths-array":  `{"auths":[]}`,
		"bad-base64":   `{"auths":{"harbor.example.com:8443":{"auth":"%%%"}}}`,
		"no-colon":     `{"auths":{"harbor.example.com:8443":{"auth":"` + base64.StdEncoding.EncodeToString([]byte("nocolon")) + `"}}}`,
		"empty-entry":  `{"auths":{"harbor.example.com:8443":{}}}`,
		"user-only":    `{"auths":{"harbor.example.com:8443":{"username":"u"}}}`,
		"other-host":   `{"auths":{"ghcr.io":{"auth":"` + basic("u", "p") + `"}}}`,
		"port-missing": `{"auths":{"harbor.example.com":{"auth":"` + basic("u", "p") + `"}}}`,
	} {
		path := filepath.Join(dir, name+".json")
		writeFile(t, path, cfg)
		_, err := ocipush.DockerConfigCredential(path, reg)
		require.ErrorContains(t, err, path, name)
		require.NotContains(t, err.Error(), "nocolon", "the secret stays out of the error")
		t.Logf("%s: %v", name, err)
	}

	// An identity token (a refresh token for a Bearer registry) will do.
	path := filepath.Join(dir, "token.json")
	writeFile(t, path, `{"auths":{"https://harbor.example.com:8443":{"identitytoken":"tok"}}}`)
	cred, err := ocipush.DockerConfigCredential(path, reg)
	require.NoError(t, err)
	c, err := cred(t.Context(), "harbor.example.com:8443")
	require.NoError(t, err)
	require.Equal(t, "tok", c.RefreshToken)
	c, err = cred(t.Context(), "elsewhere.example.com")
	require.NoError(t, err)
	require.Equal(t, auth.EmptyCredential, c, "credentials go to the registry's host only")

	// Docker Hub's credentials live under https://index.docker.io/v1/.
	hub, err := ocipush.ParseRegistry("oci://docker.io/absmach/models")
	require.NoError(t, err)
	writeFile(t, path, `{"auths":{"https://index.docker.io/v1/":{"auth":"`+basic("u", "p")+`"}}}`)
	cred, err = ocipush.DockerConfigCredential(path, hub)
	require.NoError(t, err)
	c, err = cred(t.Context(), "registry-1.docker.io")
	require.NoError(t, err)
	require.Equal(t, "u", c.Username)
}
