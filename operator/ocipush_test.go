package operator_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/require"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/absmach/propeller/api/v1alpha1"
	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/manager/ocipush"
	"github.com/absmach/propeller/operator"
	"github.com/absmach/propeller/orchestration/fl"
	"github.com/absmach/propeller/test/ocitest"
)

// newFLEnvWithRegistry is newFLEnv (proplets p1..p3) whose operator
// pushes checkpoints to registry, with the credentials in authFile unless
// it is empty.
func newFLEnvWithRegistry(t *testing.T, registry, authFile string) *flEnv {
	t.Helper()
	e := newFLData(t)
	e.op = startOperatorIn(t, e.ns, "", e.dataDir, func(c *operator.Config) {
		c.CheckpointRegistry, c.RegistryAuth = registry, authFile
	})
	for _, id := range []string{"p1", "p2", "p3"} {
		e.proplets[id] = startProplet(t, e.op.mqttAddr, id)
	}
	return e
}

// pushedCheckpoints waits until the job's n ModelCheckpoints carry a
// phase and a Pushed condition and returns them by round.
func (e *flEnv) pushedCheckpoints(n int) []v1.ModelCheckpoint {
	e.t.Helper()
	var items []v1.ModelCheckpoint
	require.Eventually(e.t, func() bool {
		l := &v1.ModelCheckpointList{}
		require.NoError(e.t, k8s.List(e.t.Context(), l, client.InNamespace(e.ns)))
		if len(l.Items) != n {
			return false
		}
		for _, mc := range l.Items {
			if meta.FindStatusCondition(mc.Status.Conditions, v1.ConditionPushed) == nil || mc.Status.Phase == "" {
				return false
			}
		}
		items = make([]v1.ModelCheckpoint, n)
		for _, mc := range l.Items {
			items[mc.Spec.Round-1] = mc
		}
		return true
	}, time.Minute, 100*time.Millisecond, "ModelCheckpoints without a Pushed condition")
	return items
}

// succeeded runs a job of rounds rounds to Succeeded and returns it, its
// record and its ModelCheckpoints once each tried its push.
func (e *flEnv) succeeded(name string, rounds int) (*v1.FederatedJob, fl.Job, []v1.ModelCheckpoint) {
	e.t.Helper()
	e.create(name, int32(rounds), nil)
	fj, j := e.waitDone(name)
	require.Equal(e.t, v1.FLSucceeded, fj.Status.Phase, fj.Status.Conditions)
	require.Len(e.t, j.Status.Checkpoints, rounds)
	return fj, j, e.pushedCheckpoints(rounds)
}

// pushed is a checkpoint's Pushed condition.
func pushed(mc *v1.ModelCheckpoint) *metav1.Condition {
	return meta.FindStatusCondition(mc.Status.Conditions, v1.ConditionPushed)
}

// closedPort is a loopback address nothing listens on (yet).
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// TestFLOperatorPushesCheckpointsToOCI: with --checkpoint-registry every
// checkpoint is also an OCI artifact <job>-round-<n> in a real registry
// (the distribution protocol, served on loopback), whose one layer is the
// checkpoint's bytes; MODEL_URI still names the blob store.
func TestFLOperatorPushesCheckpointsToOCI(t *testing.T) {
	host := ocitest.Serve(t, nil)
	e := newFLEnvWithRegistry(t, "oci://"+host+"/propeller/checkpoints", "")
	const rounds = 2
	e.create("pushed", rounds, nil)
	fj, j := e.waitDone("pushed")
	require.Equal(t, v1.FLSucceeded, fj.Status.Phase, fj.Status.Conditions)
	require.Len(t, j.Status.Checkpoints, rounds)

	repo, err := remote.NewRepository(host + "/propeller/checkpoints")
	require.NoError(t, err)
	repo.PlainHTTP = true
	for i, mc := range e.pushedCheckpoints(rounds) {
		cp := j.Status.Checkpoints[i]
		require.Equal(t, cp.Digest, mc.Spec.Digest)
		require.Equal(t, wire.BlobScheme+cp.Digest, mc.Spec.ModelURI, "proplets still fetch from the blob store")
		require.Equal(t, v1.CheckpointAvailable, mc.Status.Phase)
		c := meta.FindStatusCondition(mc.Status.Conditions, v1.ConditionPushed)
		require.Equal(t, "True", string(c.Status), c.Message)
		tag := fmt.Sprintf("pushed-round-%d", mc.Spec.Round)
		require.True(t, strings.HasPrefix(mc.Status.OCIRef, "oci://"+host+"/propeller/checkpoints:"+tag+"@sha256:"), mc.Status.OCIRef)

		requirePulled(t, repo, &mc, tag)
	}
	e.requireRoundsSound("pushed", fj, j)
}

// requirePulled: mc's ociRef pulls back (oras-go) to one safetensors layer
// whose bytes are the checkpoint's, and tag names the same manifest.
func requirePulled(t *testing.T, repo *remote.Repository, mc *v1.ModelCheckpoint, tag string) {
	t.Helper()
	ref := strings.TrimPrefix(mc.Status.OCIRef, "oci://")
	mdesc, rc, err := repo.FetchReference(t.Context(), ref[strings.Index(ref, "@")+1:])
	require.NoError(t, err)
	raw, err := content.ReadAll(rc, mdesc)
	require.NoError(t, rc.Close())
	require.NoError(t, err)
	var m ocispec.Manifest
	require.NoError(t, json.Unmarshal(raw, &m))
	require.Len(t, m.Layers, 1)
	require.Equal(t, ocipush.MediaTypeSafetensors, m.Layers[0].MediaType)
	data, err := content.FetchAll(t.Context(), repo, m.Layers[0])
	require.NoError(t, err)
	sum := sha256.Sum256(data)
	require.Equal(t, mc.Spec.Digest, "sha256:"+hex.EncodeToString(sum[:]))
	require.EqualValues(t, mc.Spec.SizeBytes, len(data))

	// The tag names the same manifest.
	byTag, err := repo.Resolve(t.Context(), tag)
	require.NoError(t, err)
	require.Equal(t, mdesc.Digest, byTag.Digest)
}

// TestFLOperatorCheckpointPushFailureKeepsRound: an unreachable registry
// (a closed port) fails no round; each ModelCheckpoint says the push
// failed.
func TestFLOperatorCheckpointPushFailureKeepsRound(t *testing.T) {
	addr := closedPort(t)
	e := newFLEnvWithRegistry(t, "oci://"+addr+"/propeller/checkpoints", "")
	fj, j, mcs := e.succeeded("unpushed", 2)
	for _, mc := range mcs {
		require.Equal(t, v1.CheckpointAvailable, mc.Status.Phase, mc.Name)
		require.Empty(t, mc.Status.OCIRef, mc.Name)
		c := pushed(&mc)
		require.Equal(t, "False", string(c.Status), mc.Name)
		require.Equal(t, operator.ReasonPushFailed, c.Reason, mc.Name)
		require.Contains(t, c.Message, "push to oci://"+addr+"/propeller/checkpoints failed", mc.Name)
	}
	e.requireRoundsSound("unpushed", fj, j)
}

// TestFLOperatorCheckpointPushRetriedUntilRegistryUp: the registry is
// down when the checkpoint is written (Pushed=False, PushFailed, a
// Warning event); the ModelCheckpoint controller retries with
// exponential backoff, so once a registry serves on that address the
// checkpoint gets pushed without anyone touching it.
func TestFLOperatorCheckpointPushRetriedUntilRegistryUp(t *testing.T) {
	addr := closedPort(t)
	e := newFLEnvWithRegistry(t, "oci://"+addr+"/propeller/checkpoints", "")
	_, _, mcs := e.succeeded("late", 1)
	mc := mcs[0]
	c := pushed(&mc)
	require.Equal(t, "False", string(c.Status), c.Message)
	require.Equal(t, operator.ReasonPushFailed, c.Reason)
	require.Empty(t, mc.Status.OCIRef)

	// The registry comes up on the address the operator was given.
	l, err := net.Listen("tcp", addr)
	require.NoError(t, err, "the registry's port was taken meanwhile")
	srv := httptest.NewUnstartedServer(ocitest.Handler())
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)

	require.Eventually(t, func() bool {
		require.NoError(t, k8s.Get(t.Context(), client.ObjectKeyFromObject(&mc), &mc))
		return meta.IsStatusConditionTrue(mc.Status.Conditions, v1.ConditionPushed)
	}, time.Minute, 100*time.Millisecond, "checkpoint never pushed after the registry came up")
	tag := "late-round-1"
	require.True(t, strings.HasPrefix(mc.Status.OCIRef, "oci://"+addr+"/propeller/checkpoints:"+tag+"@sha256:"), mc.Status.OCIRef)
	require.Equal(t, v1.CheckpointAvailable, mc.Status.Phase)
	repo, err := remote.NewRepository(addr + "/propeller/checkpoints")
	require.NoError(t, err)
	repo.PlainHTTP = true
	requirePulled(t, repo, &mc, tag)

	var reasons []string
	require.Eventually(t, func() bool {
		list := &eventsv1.EventList{}
		require.NoError(t, k8s.List(t.Context(), list, client.InNamespace(e.ns)))
		reasons = reasons[:0]
		for _, ev := range list.Items {
			if ev.Regarding.Kind == "ModelCheckpoint" && ev.Regarding.Name == mc.Name {
				reasons = append(reasons, ev.Type+"/"+ev.Reason)
			}
		}
		return slices.Contains(reasons, "Warning/"+operator.ReasonPushFailed) && slices.Contains(reasons, "Normal/"+operator.ReasonPushed)
	}, 30*time.Second, 100*time.Millisecond, "checkpoint events: %v", reasons)
}

func TestOperatorRefusesBadCheckpointRegistry(t *testing.T) {
	for _, bad := range []string{"ghcr.io/x", "oci://ghcr.io/x:tag", "oci://nohost"} {
		err := operator.Run(t.Context(), operator.Config{Rest: restCfg, Namespace: "default", CheckpointRegistry: bad})
		require.ErrorContains(t, err, "checkpoint registry", bad)
	}
}

const (
	registryUser     = "robot$propeller"
	registryPassword = "s3cret"
)

// serveAuthRegistry serves a real OCI registry on loopback behind HTTP
// Basic auth (registryUser, registryPassword): any other request gets 401
// with a Basic challenge, as from Harbor or a registry with htpasswd.
func serveAuthRegistry(t *testing.T) string {
	t.Helper()
	return ocitest.Serve(t, ocitest.WithBasicAuth(ocitest.Handler(), registryUser, registryPassword))
}

// dockerConfig is a Docker config.json with user:password for host.
func dockerConfig(host, user, password string) string {
	b64 := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	return `{"auths":{"` + host + `":{"auth":"` + b64 + `"}}}`
}

// secretMount lays out dir as the kubelet mounts a
// kubernetes.io/dockerconfigjson Secret: .dockerconfigjson is a symlink
// through ..data to a timestamped directory, and an update writes a new
// directory and swaps ..data atomically. It returns the file's path.
type secretMount struct {
	t   *testing.T
	dir string
	gen int
}

func newSecretMount(t *testing.T, content string) (*secretMount, string) {
	m := &secretMount{t: t, dir: t.TempDir()}
	m.update(content)
	require.NoError(t, os.Symlink(filepath.Join("..data", ".dockerconfigjson"), filepath.Join(m.dir, ".dockerconfigjson")))
	return m, filepath.Join(m.dir, ".dockerconfigjson")
}

func (m *secretMount) update(content string) {
	m.gen++
	ts := fmt.Sprintf("..2026_01_01_00_00_%02d.%d", m.gen, m.gen)
	require.NoError(m.t, os.Mkdir(filepath.Join(m.dir, ts), 0o755))
	require.NoError(m.t, os.WriteFile(filepath.Join(m.dir, ts, ".dockerconfigjson"), []byte(content), 0o600))
	tmp := filepath.Join(m.dir, "..data_tmp")
	require.NoError(m.t, os.Symlink(ts, tmp))
	require.NoError(m.t, os.Rename(tmp, filepath.Join(m.dir, "..data")))
}

// authRepo is the checkpoint repository on host, read with the right
// credentials.
func authRepo(t *testing.T, host string) *remote.Repository {
	t.Helper()
	repo, err := remote.NewRepository(host + "/propeller/checkpoints")
	require.NoError(t, err)
	repo.PlainHTTP = true
	repo.Client = &auth.Client{
		Credential: auth.StaticCredential(host, auth.Credential{Username: registryUser, Password: registryPassword}),
		Cache:      auth.NewCache(),
	}
	return repo
}

// TestFLOperatorPushesCheckpointsWithRegistryAuth: with
// --registry-auth naming a mounted dockerconfigjson Secret, the
// operator pushes to a registry that demands Basic auth; the artifact
// pulls back (with the credentials) to the checkpoint's bytes.
func TestFLOperatorPushesCheckpointsWithRegistryAuth(t *testing.T) {
	host := serveAuthRegistry(t)
	_, authFile := newSecretMount(t, dockerConfig(host, registryUser, registryPassword))

	// The registry refuses anonymous pulls.
	_, _, err := ocipush.Pull(t.Context(), "oci://"+host+"/propeller/checkpoints:latest", ocipush.Options{})
	require.ErrorContains(t, err, "401 Unauthorized")

	e := newFLEnvWithRegistry(t, "oci://"+host+"/propeller/checkpoints", authFile)
	_, _, mcs := e.succeeded("authed", 1)
	mc := mcs[0]
	c := pushed(&mc)
	require.Equal(t, "True", string(c.Status), c.Message)
	require.True(t, strings.HasPrefix(mc.Status.OCIRef, "oci://"+host+"/propeller/checkpoints:authed-round-1@sha256:"), mc.Status.OCIRef)
	requirePulled(t, authRepo(t, host), &mc, "authed-round-1")
}

// TestFLOperatorCheckpointPushPicksUpRotatedSecret: with a wrong password
// the push fails with Pushed=False, PushFailed naming the registry's 401,
// and is retried; once the Secret is updated in place (the kubelet's
// symlink swap) the next retry pushes, without restarting the operator.
func TestFLOperatorCheckpointPushPicksUpRotatedSecret(t *testing.T) {
	host := serveAuthRegistry(t)
	secret, authFile := newSecretMount(t, dockerConfig(host, registryUser, "wrong"))
	e := newFLEnvWithRegistry(t, "oci://"+host+"/propeller/checkpoints", authFile)
	_, _, mcs := e.succeeded("rotated", 1)
	mc := mcs[0]
	c := pushed(&mc)
	require.Equal(t, "False", string(c.Status), c.Message)
	require.Equal(t, operator.ReasonPushFailed, c.Reason)
	require.Contains(t, c.Message, "push to oci://"+host+"/propeller/checkpoints failed")
	require.Contains(t, c.Message, "401")
	require.Contains(t, c.Message, "refused the credentials")
	require.NotContains(t, c.Message, "wrong", "the password stays out of the condition")
	require.Empty(t, mc.Status.OCIRef)

	secret.update(dockerConfig(host, registryUser, registryPassword))
	require.Eventually(t, func() bool {
		require.NoError(t, k8s.Get(t.Context(), client.ObjectKeyFromObject(&mc), &mc))
		return meta.IsStatusConditionTrue(mc.Status.Conditions, v1.ConditionPushed)
	}, time.Minute, 100*time.Millisecond, "checkpoint never pushed after the Secret was rotated")
	require.True(t, strings.HasPrefix(mc.Status.OCIRef, "oci://"+host+"/propeller/checkpoints:rotated-round-1@sha256:"), mc.Status.OCIRef)
	requirePulled(t, authRepo(t, host), &mc, "rotated-round-1")
}

// TestOperatorRefusesBadRegistryAuth: a missing or malformed credentials
// file, or one without credentials for the checkpoint registry, stops the
// operator at start.
func TestOperatorRefusesBadRegistryAuth(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	const reg = "oci://registry.example.com/propeller/checkpoints"
	for _, tc := range []struct{ registry, auth, want string }{
		{reg, filepath.Join(dir, "missing.json"), "no such file"},
		{reg, write("truncated.json", `{"auths":{"registry.example.com":`), "not a Docker config.json"},
		{reg, write("plain.txt", "user:password"), "not a Docker config.json"},
		{reg, write("bad-auth.json", `{"auths":{"registry.example.com":{"auth":"%%"}}}`), "base64"},
		{reg, write("other-host.json", dockerConfig("ghcr.io", "u", "p")), "no credential for registry.example.com"},
		// Without a checkpoint registry the file still serves model pulls.
		{"", filepath.Join(dir, "missing.json"), "no such file"},
		{"", write("plain2.txt", "user:password"), "not a Docker config.json"},
	} {
		err := operator.Run(t.Context(), operator.Config{
			Rest: restCfg, Namespace: "default", CheckpointRegistry: tc.registry, RegistryAuth: tc.auth,
		})
		require.ErrorContains(t, err, "registry auth", tc.auth)
		require.ErrorContains(t, err, tc.want, tc.auth)
	}
}
