package operator_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/absmach/propeller/api/v1alpha1"
	"github.com/absmach/propeller/operator"
)

// writeKubeconfig writes a kubeconfig file for the API server at server,
// with cfg's credentials, as `kind` or a cloud CLI would.
func writeKubeconfig(t *testing.T, cfg *rest.Config, server string) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken,
	}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin"}
	kc.CurrentContext = "envtest"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, clientcmd.WriteToFile(*kc, path))
	return path
}

var brokerListening = regexp.MustCompile(`msg="embedded MQTT broker listening" addr=(\S+)`)

// TestKubeconfigFlag runs `propeller manager operator --kubeconfig FILE`
// as a process: it reaches the API server named in FILE, not the one
// $KUBECONFIG names (a closed port), and runs a WasmTask. With
// --join-token given, it creates no join token Secret.
func TestKubeconfigFlag(t *testing.T) {
	ns := newNamespace(t)
	good := writeKubeconfig(t, restCfg, restCfg.Host)
	wrong := writeKubeconfig(t, restCfg, "https://127.0.0.1:1")

	cmd := exec.Command(propellerBinary(t), "manager", "operator", "--kubeconfig", good,
		"--namespace", ns, "--embedded-broker", "--mqtt-addr", "127.0.0.1:0", "--join-token", joinToken,
		"--metrics-addr", "0", "--health-addr", "0", "--leader-elect=false")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+wrong)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-exited
		if t.Failed() {
			t.Logf("operator output:\n%s", out.String())
		}
	})

	var addr string
	require.Eventually(t, func() bool {
		select {
		case <-exited:
			return true
		default:
		}
		m := brokerListening.FindStringSubmatch(out.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil
	}, 60*time.Second, 50*time.Millisecond, "the operator never started its broker")
	select {
	case <-exited:
		t.Fatalf("the operator exited: %v", waitErr)
	default:
	}
	startProplet(t, addr, "kc-1")
	url := serveModules(t, "arith")
	require.NoError(t, k8s.Create(t.Context(), newTask(ns, "add", url+"/arith.wasm", func(s *v1.WasmTaskSpec) {
		s.Function = "add"
		s.Inputs = []float64{20, 22}
	})))
	require.Equal(t, []float64{42}, waitPhase(t, ns, "add", v1.TaskSucceeded).Status.Results)

	err := k8s.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: operator.JoinTokenSecret}, &corev1.Secret{})
	require.True(t, apierrors.IsNotFound(err), "a configured join token leaves the Secret alone: %v", err)
}
