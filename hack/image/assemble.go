package main

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content/oci"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
	"oras.land/oras-go/v2/registry/remote/retry"
)

// User is the image's non-root user and group: distroless's "nonroot",
// which Kubernetes' runAsNonRoot accepts because it is numeric.
const User = "65532"

type buildOptions struct {
	binaries                  binaries
	layout, tarball, tag      string
	caCerts                   string
	version, revision, source string
	created                   time.Time
}

type result struct{ digest v1.Hash }

func assemble(o buildOptions) (result, error) {
	var ca []byte
	if o.caCerts != "" {
		var err error
		if ca, err = os.ReadFile(o.caCerts); err != nil {
			return result{}, fmt.Errorf("ca certs: %w (set --ca-certs= to build without)", err)
		}
	}
	var images []v1.Image
	for _, b := range o.binaries {
		img, err := platformImage(o, b, ca)
		if err != nil {
			return result{}, fmt.Errorf("%s/%s: %w", b.os, b.arch, err)
		}
		images = append(images, img)
	}
	if err := os.RemoveAll(o.layout); err != nil {
		return result{}, err
	}
	p, err := layout.Write(o.layout, empty.Index)
	if err != nil {
		return result{}, fmt.Errorf("layout: %w", err)
	}
	var (
		top    mutate.Appendable = images[0]
		digest v1.Hash
	)
	if len(images) > 1 {
		idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
		for i, img := range images {
			idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
				Platform: &v1.Platform{OS: o.binaries[i].os, Architecture: o.binaries[i].arch},
			}})
		}
		top = idx
		digest, err = idx.Digest()
	} else {
		digest, err = images[0].Digest()
	}
	if err != nil {
		return result{}, err
	}
	ann := layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": o.version})
	switch t := top.(type) {
	case v1.ImageIndex:
		err = p.AppendIndex(t, ann)
	case v1.Image:
		err = p.AppendImage(t, ann)
	}
	if err != nil {
		return result{}, fmt.Errorf("layout: %w", err)
	}
	if o.tarball != "" {
		tag, err := name.NewTag(o.tag)
		if err != nil {
			return result{}, fmt.Errorf("--tag: %w", err)
		}
		if err := os.MkdirAll(filepath.Dir(o.tarball), 0o755); err != nil {
			return result{}, err
		}
		if err := tarball.WriteToFile(o.tarball, tag, images[0]); err != nil {
			return result{}, fmt.Errorf("tarball: %w", err)
		}
	}
	return result{digest: digest}, nil
}

// platformImage is one single-layer image around one binary.
func platformImage(o buildOptions, b platformBinary, ca []byte) (v1.Image, error) {
	bin, err := os.ReadFile(b.path)
	if err != nil {
		return nil, err
	}
	if err := checkStatic(bin); err != nil {
		return nil, fmt.Errorf("%s: %w", b.path, err)
	}
	files, err := rootfs(bin, ca, o.created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(files)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{
		Created: v1.Time{Time: o.created}, CreatedBy: "make image (hack/image)", Comment: "propeller " + o.version,
	}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = b.os, b.arch
	cf.Created = v1.Time{Time: o.created}
	labels := map[string]string{
		"org.opencontainers.image.title":       "propeller",
		"org.opencontainers.image.description": "Propeller: WebAssembly orchestration (manager standalone, manager operator, proplet)",
		"org.opencontainers.image.source":      o.source,
		"org.opencontainers.image.version":     o.version,
		"org.opencontainers.image.revision":    o.revision,
		"org.opencontainers.image.created":     o.created.Format(time.RFC3339),
	}
	cf.Config = v1.Config{
		User:       User + ":" + User,
		Entrypoint: []string{"/propeller"},
		WorkingDir: "/",
		Env:        []string{"HOME=/home/nonroot"},
		Labels:     labels,
	}
	return mutate.ConfigFile(img, cf)
}

// checkStatic refuses a binary that needs a dynamic loader: the image has
// no libc to give it.
func checkStatic(bin []byte) error {
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return fmt.Errorf("not an ELF executable: %w", err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("dynamically linked (PT_INTERP); build with CGO_ENABLED=0")
		}
	}
	return nil
}

// rootfs is the layer's tar: every entry owned by root, dated created.
func rootfs(bin, ca []byte, created time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(name string, mode int64) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: created, Format: tar.FormatPAX})
	}
	file := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: created, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	passwd := "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:" + User + ":" + User + ":nonroot:/home/nonroot:/sbin/nologin\n"
	group := "root:x:0:\nnonroot:x:" + User + ":\n"
	steps := []error{
		dir("etc/", 0o755),
		file("etc/passwd", 0o644, []byte(passwd)),
		file("etc/group", 0o644, []byte(group)),
	}
	if ca != nil {
		steps = append(steps, dir("etc/ssl/", 0o755), dir("etc/ssl/certs/", 0o755),
			file("etc/ssl/certs/ca-certificates.crt", 0o644, ca))
	}
	steps = append(steps,
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "home/", Mode: 0o755, ModTime: created, Format: tar.FormatPAX}),
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "home/nonroot/", Mode: 0o700, Uid: 65532, Gid: 65532, ModTime: created, Format: tar.FormatPAX}),
		dir("tmp/", 0o1777),
		file("propeller", 0o755, bin),
		tw.Close(),
	)
	if err := errors.Join(steps...); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// pushLayout copies the layout's one image or index to ref with the
// credentials `docker login` stored (credential helpers included).
func pushLayout(ctx context.Context, dir, ref string, insecure bool) (string, error) {
	src, err := oci.NewFromFS(ctx, os.DirFS(dir))
	if err != nil {
		return "", fmt.Errorf("%s: %w (run make image first)", dir, err)
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return "", fmt.Errorf("%s: %w (run make image first)", dir, err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return "", err
	}
	if len(m.Manifests) != 1 {
		return "", fmt.Errorf("%s holds %d manifests, want the 1 that make image writes", dir, len(m.Manifests))
	}
	repo, err := remote.NewRepository(ref)
	if err != nil {
		return "", fmt.Errorf("--ref %q: %w", ref, err)
	}
	if repo.Reference.Reference == "" {
		return "", fmt.Errorf("--ref %q: want registry/repository:tag", ref)
	}
	repo.PlainHTTP = insecure || loopback(repo.Reference.Registry)
	store, err := credentials.NewStoreFromDocker(credentials.StoreOptions{})
	if err != nil {
		return "", fmt.Errorf("docker credentials: %w", err)
	}
	repo.Client = &auth.Client{Client: retry.DefaultClient, Cache: auth.NewCache(), Credential: credentials.Credential(store)}
	desc, err := oras.Copy(ctx, src, m.Manifests[0].Digest.String(), repo, repo.Reference.Reference, oras.DefaultCopyOptions)
	if err != nil {
		return "", err
	}
	return desc.Digest.String(), nil
}

func loopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
