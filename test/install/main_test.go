// Package install_test tests Propeller the way it is installed: the Helm
// chart and the kustomize overlays are rendered by the real tools, every
// object is created on a real API server (envtest), and the operator's
// container, as rendered, runs as a real process with its ServiceAccount's
// rights next to real proplets; the container image, the Dockerfile and
// the systemd units are checked with the tools that consume them.
package install_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/absmach/propeller/operator"
	"github.com/absmach/propeller/test/harness"
)

var (
	restCfg *rest.Config
	k8s     client.Client
	nsSeq   atomic.Int64
)

// TestMain builds bin/propeller's sources (harness.Main) and runs one
// kube-apiserver + etcd (KUBEBUILDER_ASSETS, `make envtest`) with the
// chart's CRDs, which therefore must install.
func TestMain(m *testing.M) { harness.Main(withAPIServer{m}) }

type withAPIServer struct{ m *testing.M }

func (w withAPIServer) Run() int {
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(repoRoot(), chartDir, "crds")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "start envtest (run `make envtest` and set KUBEBUILDER_ASSETS=$PWD/bin/k8s):", err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	restCfg = cfg
	scheme := operator.Scheme()
	if err := apiextensionsv1.AddToScheme(scheme); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if k8s, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return w.m.Run()
}

const chartDir = "deploy/helm/propeller-operator"

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// tool is bin/NAME, which `make NAME` builds (make test does).
func tool(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(repoRoot(), "bin", name)
	_, err := os.Stat(p)
	require.NoError(t, err, "%s is missing: run `make %s`", p, name)
	return p
}

// newNamespace creates a namespace of the test's own (envtest runs no
// namespace controller: names are never reused).
func newNamespace(t testing.TB) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: uniqueName()}}
	require.NoError(t, k8s.Create(t.Context(), ns))
	return ns.Name
}

func harnessBinary() string { return harness.Binary }

// uniqueName is a namespace name no test has used.
func uniqueName() string { return fmt.Sprintf("i%d-%d", os.Getpid(), nsSeq.Add(1)) }
