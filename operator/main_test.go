package operator_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/absmach/propeller/operator"
)

var (
	restCfg *rest.Config
	k8s     client.Client
	nsSeq   atomic.Int64
)

// TestMain runs one real kube-apiserver + etcd for the package
// (KUBEBUILDER_ASSETS, built by `make envtest`); tests isolate themselves
// in namespaces of their own.
func TestMain(m *testing.M) {
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "deploy", "crd")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		panic("start envtest (run `make envtest` and set KUBEBUILDER_ASSETS=$PWD/bin/k8s): " + err.Error())
	}
	cfg.QPS, cfg.Burst = 1000, 2000
	restCfg = cfg
	k8s, err = client.New(cfg, client.Options{Scheme: operator.Scheme()})
	if err != nil {
		panic(err)
	}
	code := m.Run()
	_ = env.Stop()
	os.Exit(code)
}

// newNamespace creates a namespace for one test. envtest runs no namespace
// controller, so namespaces are never really deleted; unique names keep
// tests apart.
func newNamespace(t testing.TB) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("t%d-%d", os.Getpid(), nsSeq.Add(1))}}
	require.NoError(t, k8s.Create(t.Context(), ns))
	return ns.Name
}
