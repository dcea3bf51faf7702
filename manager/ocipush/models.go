package ocipush

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote/auth"
)

// Defaults of Models.
const (
	DefaultMaxModelBytes = 1 << 30
	DefaultModelTimeout  = 2 * time.Minute
)

// Models pulls the initial models of federated jobs, named
// "oci://host/repo[:tag][@sha256:<hex>]": the layer of a one-layer
// artifact, whatever its media type (`oras push host/repo:tag
// model.safetensors` makes one; so does a checkpoint push). The
// coordinator checks the content. It implements fl.Models.
type Models struct {
	// AuthFile is a Docker config.json with registry credentials. It is
	// read on every pull, so a rotated Secret works without a restart; a
	// registry it has no entry for is pulled from anonymously.
	AuthFile string
	// MaxBytes bounds a model; 0 means DefaultMaxModelBytes.
	MaxBytes int64
	// Timeout bounds one pull; 0 means DefaultModelTimeout.
	Timeout time.Duration
}

// FetchModel pulls ref.
func (m Models) FetchModel(ctx context.Context, ref string) ([]byte, error) {
	opts := Options{AnyMediaType: true, MaxBytes: m.MaxBytes}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxModelBytes
	}
	if m.AuthFile != "" {
		cred, err := m.credential(ref)
		if err != nil {
			return nil, err
		}
		opts.Credential = cred
	}
	timeout := m.Timeout
	if timeout <= 0 {
		timeout = DefaultModelTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	data, _, err := Pull(ctx, ref, opts)
	return data, err
}

func (m Models) credential(ref string) (auth.CredentialFunc, error) {
	r, err := registry.ParseReference(strings.TrimPrefix(ref, Scheme))
	if err != nil {
		return nil, fmt.Errorf("oci reference %q: %w", ref, err)
	}
	cred, err := DockerConfigCredential(m.AuthFile, Registry{Host: r.Registry, Repository: r.Repository})
	if errors.Is(err, ErrNoCredential) {
		return nil, nil
	}
	return cred, err
}
