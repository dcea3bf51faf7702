// Command image assembles the propeller container image from static
// binaries without a Docker daemon, and pushes it. `make image` and
// `make image-push` run it:
//
//	go run ./hack/image build --binary linux/amd64=bin/image/propeller-linux-amd64 \
//	    --layout bin/image/oci --tarball bin/image/propeller.tar --version v1 --revision abc ...
//	go run ./hack/image push --layout bin/image/oci --ref registry.example.com/propeller:v1
//
// The image has no base: one layer with /propeller, the CA bundle (for
// https:// and oci:// artifacts), /etc/passwd naming user 65532 and an
// empty /tmp. Everything in it is dated by --created, so one commit built
// twice gives the same digest.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: image build|push [flags]")
	}
	switch args[0] {
	case "build":
		return build(args[1:], out)
	case "push":
		return push(args[1:], out)
	default:
		return fmt.Errorf("unknown command %q: want build or push", args[0])
	}
}

// binaries is --binary os/arch=path, repeatable: one image per platform,
// an index over them when there are several.
type binaries []platformBinary

type platformBinary struct{ os, arch, path string }

func (b *binaries) String() string { return fmt.Sprint(*b) }

func (b *binaries) Set(v string) error {
	plat, path, ok := strings.Cut(v, "=")
	goos, arch, ok2 := strings.Cut(plat, "/")
	if !ok || !ok2 || path == "" || goos == "" || arch == "" {
		return fmt.Errorf("%q: want os/arch=path, e.g. linux/amd64=bin/image/propeller-linux-amd64", v)
	}
	*b = append(*b, platformBinary{os: goos, arch: arch, path: path})
	return nil
}

func build(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("build", flag.ContinueOnError)
	var o buildOptions
	fs.Var(&o.binaries, "binary", "os/arch=path of a static propeller binary; repeat for more platforms")
	fs.StringVar(&o.layout, "layout", "", "OCI image layout directory to write (replaced)")
	fs.StringVar(&o.tarball, "tarball", "", "also write the first platform's image as a docker-archive tarball (docker load, kind load image-archive)")
	fs.StringVar(&o.tag, "tag", "propeller:dev", "name the tarball's image carries")
	fs.StringVar(&o.caCerts, "ca-certs", "/etc/ssl/certs/ca-certificates.crt", "CA bundle to include as /etc/ssl/certs/ca-certificates.crt; empty for none")
	fs.StringVar(&o.version, "version", "dev", "org.opencontainers.image.version")
	fs.StringVar(&o.revision, "revision", "", "org.opencontainers.image.revision: the VCS commit")
	fs.StringVar(&o.source, "source", "https://github.com/absmach/propeller", "org.opencontainers.image.source")
	created := fs.String("created", "", "build time, RFC 3339 (the commit time keeps builds reproducible); default now")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case len(o.binaries) == 0:
		return errors.New("build: at least one --binary is required")
	case o.layout == "":
		return errors.New("build: --layout is required")
	}
	o.created = time.Now().UTC().Truncate(time.Second)
	if *created != "" {
		t, err := time.Parse(time.RFC3339, *created)
		if err != nil {
			return fmt.Errorf("build: --created %q: %w", *created, err)
		}
		o.created = t.UTC()
	}
	res, err := assemble(o)
	if err != nil {
		return fmt.Errorf("build: %w", err)
	}
	fmt.Fprintf(out, "image %s written to %s\n", res.digest, o.layout)
	if o.tarball != "" {
		fmt.Fprintf(out, "tarball %s (%s)\n", o.tarball, o.tag)
	}
	return nil
}

func push(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("push", flag.ContinueOnError)
	layoutDir := fs.String("layout", "", "OCI image layout written by build")
	ref := fs.String("ref", "", "where to push, registry/repository:tag")
	insecure := fs.Bool("insecure", false, "plain HTTP (loopback registries always use it)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *layoutDir == "" || *ref == "" {
		return errors.New("push: --layout and --ref are required")
	}
	d, err := pushLayout(context.Background(), *layoutDir, *ref, *insecure)
	if err != nil {
		return fmt.Errorf("push: %w", err)
	}
	fmt.Fprintf(out, "pushed %s@%s\n", *ref, d)
	return nil
}
