package install_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/absmach/propeller/test/harness"
)

// kubelet plays the part of a node for the pods of one rendering: it runs a
// pod's container as a process of the propeller binary (the image's
// ENTRYPOINT) with the container's args and env as Kubernetes would
// resolve them (fieldRefs, Secrets, $(VAR)), its volumes as directories
// (Secret volumes hold the Secret's keys), and its ServiceAccount's
// identity, impersonated on the API server. Container ports are served on
// free loopback ports, and a Service's cluster DNS name in an argument
// points at the loopback port of the port it targets.
type kubelet struct {
	ns   string
	node string
	// hosts maps "<service>.<ns>.svc:<port>" to a loopback address.
	hosts map[string]string
	// dirs are the node's hostPath directories: the same for every pod.
	dirs map[string]string
}

func newKubelet(ns, node string) *kubelet {
	return &kubelet{ns: ns, node: node, hosts: map[string]string{}, dirs: map[string]string{}}
}

func (k *kubelet) hostDir(t *testing.T, path string) string {
	if d, ok := k.dirs[path]; ok {
		return d
	}
	// The node's, not the test's: it outlives the pods of the test.
	d := filepath.Join(t.TempDir(), "host", path)
	require.NoError(t, os.MkdirAll(d, 0o755))
	k.dirs[path] = d
	return d
}

// container is one running container.
type container struct {
	proc *proc
	// ports maps container ports (by number and name) to loopback ones.
	ports map[string]string
	// mounts maps mount paths to host directories.
	mounts map[string]string
	spec   corev1.Container
}

// run starts the first container of spec; sa is the pod's ServiceAccount
// ("" runs it without API access, as automountServiceAccountToken: false).
func (k *kubelet) run(t *testing.T, name string, spec corev1.PodSpec) *container {
	t.Helper()
	require.NotEmpty(t, spec.Containers)
	c := spec.Containers[0]
	require.Empty(t, c.Command, "the image's ENTRYPOINT runs the binary")
	ctr := &container{ports: map[string]string{}, mounts: map[string]string{}, spec: c}
	volumes := map[string]string{}
	for _, v := range spec.Volumes {
		dir := t.TempDir()
		if v.HostPath != nil {
			dir = k.hostDir(t, v.HostPath.Path)
		}
		volumes[v.Name] = dir
		switch {
		case v.Secret != nil:
			s := &corev1.Secret{}
			require.NoError(t, k8s.Get(t.Context(), client.ObjectKey{Namespace: k.ns, Name: v.Secret.SecretName}, s), "secret volume %s", v.Name)
			files := map[string]string{}
			for key := range s.Data {
				files[key] = key
			}
			if len(v.Secret.Items) > 0 {
				files = map[string]string{}
				for _, it := range v.Secret.Items {
					files[it.Key] = it.Path
				}
			}
			for key, path := range files {
				data, ok := s.Data[key]
				require.True(t, ok, "secret %s has no key %s", s.Name, key)
				require.NoError(t, os.WriteFile(filepath.Join(dir, path), data, 0o600))
			}
		case v.PersistentVolumeClaim != nil:
			require.NoError(t, k8s.Get(t.Context(), client.ObjectKey{Namespace: k.ns, Name: v.PersistentVolumeClaim.ClaimName}, &corev1.PersistentVolumeClaim{}), "claim of volume %s", v.Name)
		case v.EmptyDir != nil, v.HostPath != nil:
		default:
			t.Fatalf("volume %s: a kind this test does not play", v.Name)
		}
	}
	for _, m := range c.VolumeMounts {
		dir, ok := volumes[m.Name]
		require.True(t, ok, "mount of unknown volume %s", m.Name)
		ctr.mounts[m.MountPath] = dir
	}
	for _, p := range c.Ports {
		addr := freeAddr(t)
		ctr.ports[strconv.Itoa(int(p.ContainerPort))] = addr
		if p.Name != "" {
			ctr.ports[p.Name] = addr
		}
	}

	env := map[string]string{}
	var environ []string
	for _, e := range c.Env {
		v := k.envValue(t, name, spec, e, env)
		env[e.Name] = v
		environ = append(environ, e.Name+"="+ctr.localize(v))
	}
	environ = append(environ, "HOME="+t.TempDir(), "PATH="+os.Getenv("PATH"))
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		environ = append(environ, "KUBECONFIG="+k.kubeconfig(t, spec.ServiceAccountName))
	}
	args := make([]string, len(c.Args))
	for i, a := range c.Args {
		args[i] = k.rewrite(ctr.localize(expand(a, env)), ctr.ports)
	}
	ctr.proc = start(t, name, environ, args...)
	return ctr
}

// envValue resolves one EnvVar as the kubelet does.
func (k *kubelet) envValue(t *testing.T, pod string, spec corev1.PodSpec, e corev1.EnvVar, env map[string]string) string {
	t.Helper()
	switch {
	case e.ValueFrom == nil:
		return expand(e.Value, env)
	case e.ValueFrom.FieldRef != nil:
		switch e.ValueFrom.FieldRef.FieldPath {
		case "metadata.namespace":
			return k.ns
		case "metadata.name":
			return pod
		case "spec.nodeName":
			return k.node
		case "spec.serviceAccountName":
			return spec.ServiceAccountName
		}
	case e.ValueFrom.SecretKeyRef != nil:
		ref := e.ValueFrom.SecretKeyRef
		return secretValue(t, k.ns, ref.Name, ref.Key)
	}
	t.Fatalf("env %s: a source this test does not play", e.Name)
	return ""
}

var varRef = regexp.MustCompile(`\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expand replaces $(VAR) with earlier env, as Kubernetes does in args and
// env values; $$ is a literal $ and unknown references stay.
func expand(s string, env map[string]string) string {
	return varRef.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		if v, ok := env[m[2:len(m)-1]]; ok {
			return v
		}
		return m
	})
}

// localize points paths under a mount at the mount's directory.
func (c *container) localize(s string) string {
	paths := make([]string, 0, len(c.mounts))
	for p := range c.mounts {
		paths = append(paths, p)
	}
	slices.SortFunc(paths, func(a, b string) int { return len(b) - len(a) })
	for _, p := range paths {
		s = regexp.MustCompile(`(^|=)`+regexp.QuoteMeta(p)+`(/|$)`).ReplaceAllString(s, "${1}"+c.mounts[p]+"${2}")
	}
	return s
}

var listenArg = regexp.MustCompile(`^(--[a-z-]+=)(0\.0\.0\.0)?:([0-9]+)$`)

// rewrite makes "--x-addr=:PORT" listen on the container port's loopback
// address, and Service names dial what the Service targets.
func (k *kubelet) rewrite(a string, ports map[string]string) string {
	if m := listenArg.FindStringSubmatch(a); m != nil {
		if addr, ok := ports[m[3]]; ok {
			return m[1] + addr
		}
	}
	for from, to := range k.hosts {
		a = strings.ReplaceAll(a, from, to)
	}
	return a
}

// route makes in-cluster clients of every Service of m that selects the
// operator reach c's ports.
func (k *kubelet) route(t testing.TB, m manifest, c *container) {
	for _, u := range m.find("Service") {
		svc := as[corev1.Service](t, u)
		for _, p := range svc.Spec.Ports {
			target := p.TargetPort.String()
			if p.TargetPort.Type == intstr.Int && p.TargetPort.IntValue() == 0 {
				target = strconv.Itoa(int(p.Port))
			}
			if addr, ok := c.ports[target]; ok {
				k.hosts[fmt.Sprintf("%s.%s.svc:%d", svc.Name, k.ns, p.Port)] = addr
			}
		}
	}
}

// kubeconfig is a kubeconfig that reaches envtest as ServiceAccount sa,
// by impersonation: every call is authorized as the pod's would be.
func (k *kubelet) kubeconfig(t *testing.T, sa string) string {
	t.Helper()
	require.NotEmpty(t, sa, "the pod names its ServiceAccount")
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["envtest"] = &clientcmdapi.Cluster{Server: restCfg.Host, CertificateAuthorityData: restCfg.CAData}
	cfg.AuthInfos["sa"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: restCfg.CertData, ClientKeyData: restCfg.KeyData,
		Impersonate:       serviceAccountUser(k.ns, sa),
		ImpersonateGroups: serviceAccountGroups(k.ns),
	}
	cfg.Contexts["sa"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "sa"}
	cfg.CurrentContext = "sa"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, clientcmd.WriteToFile(*cfg, path))
	return path
}

func serviceAccountUser(ns, sa string) string { return "system:serviceaccount:" + ns + ":" + sa }

func serviceAccountGroups(ns string) []string {
	return []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}
}

// waitReady polls the container's readiness probe until it passes.
func (c *container) waitReady(t *testing.T) {
	t.Helper()
	probe := c.spec.ReadinessProbe
	require.NotNil(t, probe, "the container has a readiness probe")
	require.NotNil(t, probe.HTTPGet)
	addr, ok := c.ports[probe.HTTPGet.Port.String()]
	require.True(t, ok, "probe port %s is not a container port", probe.HTTPGet.Port.String())
	url := "http://" + addr + probe.HTTPGet.Path
	require.Eventually(t, func() bool {
		select {
		case <-c.proc.done:
			t.Fatalf("%s exited before it was ready", c.proc.name)
		default:
		}
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 2*time.Minute, 100*time.Millisecond, "readiness probe %s", url)
}

// proc is a process of the propeller binary; its output goes to a file,
// shown when the test fails.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func start(t *testing.T, name string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, log: filepath.Join(t.TempDir(), name+".log"), done: make(chan struct{})}
	f, err := os.Create(p.log)
	require.NoError(t, err)
	p.cmd = exec.Command(harness.Binary, args...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = f, f
	require.NoError(t, p.cmd.Start(), "start %s", name)
	go func() {
		p.err = p.cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			if len(b) > 8000 {
				b = b[len(b)-8000:]
			}
			t.Logf("--- %s %s ---\n%s", name, strings.Join(args, " "), b)
		}
	})
	return p
}

// stop sends SIGTERM, as the kubelet does, and waits.
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.done
}

func (p *proc) output() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

var (
	addrMu sync.Mutex
	given  = map[string]bool{}
)

// freeAddr is a loopback address nothing listens on, never handed out
// twice in this process.
func freeAddr(t testing.TB) string {
	t.Helper()
	addrMu.Lock()
	defer addrMu.Unlock()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := ln.Addr().String()
		require.NoError(t, ln.Close())
		if !given[addr] {
			given[addr] = true
			return addr
		}
	}
}
