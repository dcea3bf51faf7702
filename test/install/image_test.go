package install_test

import (
	"archive/tar"
	"compress/gzip"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/require"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/absmach/propeller/test/ocitest"
)

// TestImage builds the image with `make image`, pushes it with `make
// image-push` to a real registry, pulls it back and runs its binary.
func TestImage(t *testing.T) {
	head := strings.TrimSpace(string(run(t, "git", "-C", repoRoot(), "rev-parse", "HEAD")))
	bin := t.TempDir()
	run(t, "make", "-C", repoRoot(), "-s", "image", "BIN="+bin)
	reg := ocitest.Serve(t, nil)
	out := run(t, "make", "-C", repoRoot(), "-s", "image-push", "BIN="+bin, "REGISTRY="+reg+"/team", "TAG=test")
	require.Contains(t, string(out), "pushed "+reg+"/team/propeller:test@sha256:")
	require.Contains(t, string(out), "--set image.repository="+reg+"/team/propeller --set image.tag=test", "it says how to install it")

	repo, err := remote.NewRepository(reg + "/team/propeller")
	require.NoError(t, err)
	repo.PlainHTTP = true
	ctx := t.Context()
	desc, err := repo.Resolve(ctx, "test")
	require.NoError(t, err)
	require.Equal(t, ocispec.MediaTypeImageManifest, desc.MediaType)
	var manifest ocispec.Manifest
	require.NoError(t, json.Unmarshal(must(content.FetchAll(ctx, repo, desc)), &manifest))
	var cf ocispec.Image
	require.NoError(t, json.Unmarshal(must(content.FetchAll(ctx, repo, manifest.Config)), &cf))
	require.Equal(t, "65532:65532", cf.Config.User, "non-root")
	require.Equal(t, []string{"/propeller"}, cf.Config.Entrypoint)
	require.Equal(t, "linux", cf.OS)
	labels := cf.Config.Labels
	require.Equal(t, head, labels["org.opencontainers.image.revision"], "the commit make image ran on")
	require.Equal(t, "https://github.com/absmach/propeller", labels["org.opencontainers.image.source"])
	require.NotEmpty(t, labels["org.opencontainers.image.version"])

	require.Len(t, manifest.Layers, 1, "one layer, no base image")
	require.Equal(t, ocispec.MediaTypeImageLayerGzip, manifest.Layers[0].MediaType)
	layer, err := repo.Fetch(ctx, manifest.Layers[0])
	require.NoError(t, err)
	defer layer.Close()
	rc, err := gzip.NewReader(content.NewVerifyReader(layer, manifest.Layers[0]))
	require.NoError(t, err)
	binary := filepath.Join(t.TempDir(), "propeller")
	var files []string
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		files = append(files, h.Name)
		if h.Name == "propeller" {
			require.Zero(t, h.Mode&0o022, "not writable by group or others")
			f, err := os.OpenFile(binary, os.O_CREATE|os.O_WRONLY, 0o755)
			require.NoError(t, err)
			_, err = io.Copy(f, tr)
			require.NoError(t, err)
			require.NoError(t, f.Close())
		}
	}
	require.Contains(t, files, "propeller")
	require.Contains(t, files, "etc/ssl/certs/ca-certificates.crt", "https:// and oci:// artifacts need CA roots")

	ef, err := elf.Open(binary)
	require.NoError(t, err)
	for _, p := range ef.Progs {
		require.NotEqual(t, elf.PT_INTERP, p.Type, "statically linked: no dynamic loader")
	}
	libs, err := ef.ImportedLibraries()
	require.NoError(t, err)
	require.Empty(t, libs)
	require.NoError(t, ef.Close())

	version, err := exec.Command(binary, "version").CombinedOutput()
	require.NoError(t, err, "%s", version)
	require.Contains(t, string(version), "revision:   "+head)
	require.Contains(t, string(version), "propeller "+labels["org.opencontainers.image.version"])
}
