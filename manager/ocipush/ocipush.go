// Package ocipush pushes a blob to an OCI registry as a single-layer
// artifact and pulls it back, verifying digests both ways. The operator
// pushes model checkpoints with it; both managers pull initial models
// (oci:// modelRefs) with it; tests seed registries with it (a wasm module
// is a one-layer application/wasm artifact). It depends on the
// standard library and oras-go only.
//
// Registries are named "oci://host[:port]/repo". Plain HTTP is used only
// for loopback registries (localhost, 127.0.0.0/8, ::1); every other
// registry is reached over HTTPS. Registries that want credentials get
// them from a Docker config.json (DockerConfigCredential).
package ocipush

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
)

// Media types of a model checkpoint artifact.
const (
	MediaTypeSafetensors = "application/vnd.propeller.model.safetensors"
	ArtifactTypeModel    = "application/vnd.propeller.model.v1"
	// Scheme prefixes registry names and references.
	Scheme = "oci://"
)

// Registry is a parsed "oci://host[:port]/repo".
type Registry struct {
	Host       string // host[:port]
	Repository string
}

// ParseRegistry parses "oci://host[:port]/repo": the scheme is required and
// the name carries neither tag nor digest.
func ParseRegistry(s string) (Registry, error) {
	rest, ok := strings.CutPrefix(s, Scheme)
	if !ok {
		return Registry{}, fmt.Errorf("oci registry %q: want oci://host[:port]/repo", s)
	}
	ref, err := registry.ParseReference(rest)
	if err != nil {
		return Registry{}, fmt.Errorf("oci registry %q: %w", s, err)
	}
	if ref.Reference != "" {
		return Registry{}, fmt.Errorf("oci registry %q: must not carry a tag or digest", s)
	}
	return Registry{Host: ref.Registry, Repository: ref.Repository}, nil
}

func (r Registry) String() string { return Scheme + r.Host + "/" + r.Repository }

// PlainHTTP says whether the registry is reached over plain HTTP: only
// loopback registries are.
func (r Registry) PlainHTTP() bool { return IsLoopback(r.Host) }

// IsLoopback reports whether host[:port] names the loopback interface.
func IsLoopback(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// Options configures Push and Pull. The zero value is usable.
type Options struct {
	// MediaType of the single layer; default MediaTypeSafetensors.
	MediaType string
	// ArtifactType of the manifest; default ArtifactTypeModel.
	ArtifactType string
	Annotations  map[string]string
	HTTPClient   *http.Client
	// Credential answers the registry's 401 challenges (Basic, or Bearer
	// through its token service); nil pushes anonymously. See
	// DockerConfigCredential.
	Credential auth.CredentialFunc
	// AnyMediaType makes Pull accept a layer of any media type.
	AnyMediaType bool
	// MaxBytes, when positive, makes Pull refuse a larger layer before
	// fetching it.
	MaxBytes int64
}

// Result says where a blob was pushed.
type Result struct {
	// Ref is "oci://host/repo:tag@sha256:<manifest>", pullable by Pull.
	Ref      string
	Manifest string // manifest digest
	Layer    string // layer digest, sha256 of the pushed bytes
}

// Push uploads data as one layer of an OCI image manifest (empty config),
// tags it and verifies the tag resolves to the manifest pushed. Blobs the
// registry already has are not uploaded again.
func Push(ctx context.Context, reg Registry, tag string, data []byte, opts Options) (Result, error) {
	res, err := push(ctx, reg, tag, data, opts)
	if err != nil {
		return Result{}, explainAuth(err, reg.Host, opts.Credential != nil)
	}
	return res, nil
}

func push(ctx context.Context, reg Registry, tag string, data []byte, opts Options) (Result, error) {
	repo, err := repository(reg, tag, opts)
	if err != nil {
		return Result{}, err
	}
	if err := repo.Reference.ValidateReferenceAsTag(); err != nil {
		return Result{}, fmt.Errorf("oci tag %q: %w", tag, err)
	}
	layer := content.NewDescriptorFromBytes(cmp(opts.MediaType, MediaTypeSafetensors), data)
	cfg := ocispec.DescriptorEmptyJSON
	for _, b := range []struct {
		desc ocispec.Descriptor
		data []byte
	}{{layer, data}, {cfg, cfg.Data}} {
		if err := pushIfMissing(ctx, repo, b.desc, b.data); err != nil {
			return Result{}, fmt.Errorf("push %s: %w", reg, err)
		}
	}
	cfg.Data = nil
	manifest, err := json.Marshal(ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: cmp(opts.ArtifactType, ArtifactTypeModel),
		Config:       cfg,
		Layers:       []ocispec.Descriptor{layer},
		Annotations:  opts.Annotations,
	})
	if err != nil {
		return Result{}, err
	}
	mdesc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, manifest)
	if err := repo.PushReference(ctx, mdesc, bytes.NewReader(manifest), tag); err != nil {
		return Result{}, fmt.Errorf("push %s: manifest: %w", reg, err)
	}
	got, err := repo.Resolve(ctx, tag)
	if err != nil {
		return Result{}, fmt.Errorf("push %s: resolve %s: %w", reg, tag, err)
	}
	if got.Digest != mdesc.Digest {
		return Result{}, fmt.Errorf("push %s: tag %s resolves to %s, pushed %s", reg, tag, got.Digest, mdesc.Digest)
	}
	return Result{
		Ref:      fmt.Sprintf("%s%s/%s:%s@%s", Scheme, reg.Host, reg.Repository, tag, mdesc.Digest),
		Manifest: mdesc.Digest.String(),
		Layer:    layer.Digest.String(),
	}, nil
}

// Pull fetches the single layer of the artifact ref names
// ("oci://host/repo:tag", "...@sha256:..." or both), verifying the manifest
// and the layer against their digests. It returns the bytes and the
// layer digest.
func Pull(ctx context.Context, ref string, opts Options) ([]byte, string, error) {
	data, layer, err := pull(ctx, ref, opts)
	if err != nil {
		return nil, "", explainAuth(err, ref, opts.Credential != nil)
	}
	return data, layer, nil
}

func pull(ctx context.Context, ref string, opts Options) ([]byte, string, error) {
	rest, ok := strings.CutPrefix(ref, Scheme)
	if !ok {
		return nil, "", fmt.Errorf("oci reference %q: want oci://", ref)
	}
	r, err := registry.ParseReference(rest)
	if err != nil {
		return nil, "", fmt.Errorf("oci reference %q: %w", ref, err)
	}
	repo, err := repository(Registry{Host: r.Registry, Repository: r.Repository}, r.Reference, opts)
	if err != nil {
		return nil, "", err
	}
	mdesc, raw, err := repo.FetchReference(ctx, r.ReferenceOrDefault())
	if err != nil {
		return nil, "", fmt.Errorf("pull %s: %w", ref, err)
	}
	manifest, err := content.ReadAll(raw, mdesc)
	raw.Close()
	if err != nil {
		return nil, "", fmt.Errorf("pull %s: manifest: %w", ref, err)
	}
	if d, err := r.Digest(); err == nil && d != mdesc.Digest {
		return nil, "", fmt.Errorf("pull %s: manifest digest %s", ref, mdesc.Digest)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(manifest, &m); err != nil {
		return nil, "", fmt.Errorf("pull %s: manifest: %w", ref, err)
	}
	if len(m.Layers) != 1 {
		return nil, "", fmt.Errorf("pull %s: %d layers, want 1", ref, len(m.Layers))
	}
	want := cmp(opts.MediaType, MediaTypeSafetensors)
	if !opts.AnyMediaType && m.Layers[0].MediaType != want {
		return nil, "", fmt.Errorf("pull %s: layer media type %q, want %q", ref, m.Layers[0].MediaType, want)
	}
	if opts.MaxBytes > 0 && m.Layers[0].Size > opts.MaxBytes {
		return nil, "", fmt.Errorf("pull %s: layer of %d bytes, more than %d", ref, m.Layers[0].Size, opts.MaxBytes)
	}
	data, err := content.FetchAll(ctx, repo, m.Layers[0])
	if err != nil {
		return nil, "", fmt.Errorf("pull %s: layer: %w", ref, err)
	}
	return data, m.Layers[0].Digest.String(), nil
}

func repository(reg Registry, reference string, opts Options) (*remote.Repository, error) {
	if reg.Host == "" || reg.Repository == "" {
		return nil, errors.New("oci registry: host and repository are required")
	}
	name := reg.Host + "/" + reg.Repository
	repo, err := remote.NewRepository(name)
	if err != nil {
		return nil, fmt.Errorf("oci registry %q: %w", name, err)
	}
	repo.Reference.Reference = reference
	repo.PlainHTTP = reg.PlainHTTP()
	hc := opts.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	repo.Client = &auth.Client{Client: hc, Credential: opts.Credential, Cache: auth.NewCache()}
	return repo, nil
}

func pushIfMissing(ctx context.Context, repo *remote.Repository, desc ocispec.Descriptor, data []byte) error {
	ok, err := repo.Exists(ctx, desc)
	if err != nil {
		return err
	}
	if ok {
		return nil
	}
	return repo.Push(ctx, desc, bytes.NewReader(data))
}

func cmp(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
