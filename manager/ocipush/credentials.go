package ocipush

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"

	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

// DockerConfigCredential reads path, a Docker config.json such as the
// ".dockerconfigjson" key of a kubernetes.io/dockerconfigjson Secret, and
// returns the credential function for reg: the entry for reg's host in
// "auths" (keys may carry a scheme, as in "https://host/"), with either
// "auth" (base64 of user:password), "username" and "password", or
// "identitytoken" (an OAuth2 refresh token). Credential helpers and
// stores ("credsStore", "credHelpers") are not used.
//
// The file is read once, here: call it again to pick up a rewritten file.
// It is an error for the file to be missing or unreadable, not to be a
// Docker config, to carry an undecodable entry, or to have no credential
// for reg's host.
func DockerConfigCredential(path string, reg Registry) (auth.CredentialFunc, error) {
	cred, err := loadDockerConfig(path, reg.Host)
	if err != nil {
		return nil, fmt.Errorf("registry credentials %s: %w", path, err)
	}
	return func(_ context.Context, hostport string) (auth.Credential, error) {
		if sameRegistry(hostport, reg.Host) {
			return cred, nil
		}
		return auth.EmptyCredential, nil
	}, nil
}

// CheckDockerConfig reports whether path is a readable Docker config.json
// whose entries decode, whatever registries it names.
func CheckDockerConfig(path string) error {
	if _, _, err := readDockerConfig(path); err != nil {
		return fmt.Errorf("registry credentials %s: %w", path, err)
	}
	return nil
}

// readDockerConfig returns the credentials of a Docker config.json and the
// keys of its "auths".
func readDockerConfig(path string) (credentials.Store, map[string]json.RawMessage, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var cfg struct {
		Auths map[string]json.RawMessage `json:"auths"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, nil, fmt.Errorf("not a Docker config.json: %w", err)
	}
	if len(cfg.Auths) == 0 {
		return nil, nil, errors.New(`not a Docker config.json: no "auths"`)
	}
	// oras-go decodes the entries ("auth", "username"/"password",
	// "identitytoken", "registrytoken") and keys them by host name.
	store, err := credentials.NewMemoryStoreFromDockerConfig(data)
	if err != nil {
		// oras-go's message can quote the decoded secret: keep it out of
		// logs and conditions.
		return nil, nil, errors.New(`an "auth" in "auths" is not base64 of user:password`)
	}
	return store, cfg.Auths, nil
}

func loadDockerConfig(path, host string) (auth.Credential, error) {
	store, auths, err := readDockerConfig(path)
	if err != nil {
		return auth.EmptyCredential, err
	}
	for _, h := range aliases(host) {
		cred, err := store.Get(context.Background(), h)
		if err != nil {
			return auth.EmptyCredential, err
		}
		if cred == auth.EmptyCredential {
			continue
		}
		if (cred.Username == "" || cred.Password == "") && cred.RefreshToken == "" && cred.AccessToken == "" {
			return auth.EmptyCredential, fmt.Errorf("the entry for %s has neither username and password nor a token", h)
		}
		return cred, nil
	}
	hosts := make([]string, 0, len(auths))
	for k := range auths {
		if slices.Contains(aliases(host), hostname(k)) {
			return auth.EmptyCredential, fmt.Errorf("the entry %q has neither username and password nor a token", k)
		}
		hosts = append(hosts, k)
	}
	slices.Sort(hosts)
	return auth.EmptyCredential, fmt.Errorf("%w for %s (auths has %s)", ErrNoCredential, host, strings.Join(hosts, ", "))
}

// ErrNoCredential says a Docker config has no entry for a registry.
var ErrNoCredential = errors.New("no credential")

// dockerHub are the names of Docker Hub's registry, whose credentials the
// Docker CLI keeps under "https://index.docker.io/v1/".
var dockerHub = []string{"docker.io", "registry-1.docker.io", "index.docker.io"}

func aliases(host string) []string {
	if slices.Contains(dockerHub, host) {
		return dockerHub
	}
	return []string{host}
}

func sameRegistry(a, b string) bool {
	return a == b || slices.Contains(dockerHub, a) && slices.Contains(dockerHub, b)
}

// hostname is a key of "auths" without scheme and path, as oras-go and
// the Docker CLI match them.
func hostname(key string) string {
	key = strings.TrimPrefix(key, "http://")
	key = strings.TrimPrefix(key, "https://")
	key, _, _ = strings.Cut(key, "/")
	return key
}

// explainAuth says what a 401 means: oras-go reports a Basic challenge
// it has no credentials for as "basic credential not found", and one
// that refused the credentials as the bare status.
func explainAuth(err error, where string, withCredentials bool) error {
	if errors.Is(err, auth.ErrBasicCredentialNotFound) {
		return fmt.Errorf("%w: %s answered 401 Unauthorized (Basic) and no credentials were given for it", err, where)
	}
	var resp *errcode.ErrorResponse
	if errors.As(err, &resp) && resp.StatusCode == http.StatusUnauthorized {
		if withCredentials {
			return fmt.Errorf("%w (the registry refused the credentials)", err)
		}
		return fmt.Errorf("%w (the registry wants credentials; none were given)", err)
	}
	return err
}
