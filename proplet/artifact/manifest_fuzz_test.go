package artifact

import (
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/require"
)

// FuzzWasmLayer feeds arbitrary manifests, as a registry may serve them,
// to the layer pick: it must refuse with an error or name exactly one wasm
// layer of the manifest, and never panic.
func FuzzWasmLayer(f *testing.F) {
	f.Add(ocispec.MediaTypeImageManifest, []byte(`{"schemaVersion":2,"layers":[{"mediaType":"application/wasm","digest":"sha256:`+
		`e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0}]}`))
	f.Add(ocispec.MediaTypeImageManifest, []byte(`{"layers":[{"mediaType":"application/wasm"},{"mediaType":"application/vnd.wasm.content.layer.v1+wasm"}]}`))
	f.Add("application/vnd.docker.distribution.manifest.v2+json", []byte(`{"layers":[]}`))
	f.Add(ocispec.MediaTypeImageIndex, []byte(`{"manifests":[]}`))
	f.Add(ocispec.MediaTypeImageManifest, []byte(`{"layers":[{"mediaType":"application/wasm","size":-1}]`))
	f.Fuzz(func(t *testing.T, mediaType string, raw []byte) {
		l, err := wasmLayer(ocispec.Descriptor{MediaType: mediaType}, raw)
		if err != nil {
			require.NotEmpty(t, err.Error())
			return
		}
		require.Contains(t, []string{MediaTypeWasm, MediaTypeWasmLegacy}, l.MediaType)
	})
}
