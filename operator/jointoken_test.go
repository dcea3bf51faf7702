package operator_test

import (
	"log/slog"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/absmach/propeller/api/v1alpha1"
	"github.com/absmach/propeller/operator"
)

func joinSecret(t *testing.T, ns string) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{}
	require.NoError(t, k8s.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: operator.JoinTokenSecret}, s))
	return s
}

// TestJoinTokenSecret: an embedded broker given no join token generates
// one into the Secret propeller-join-token on first start, and a proplet
// joins with it (an empty token would admit no proplet); the next start
// reads the same Secret, and the proplet, reconnecting with the same
// token, runs a task for it.
func TestJoinTokenSecret(t *testing.T) {
	ns := newNamespace(t)
	url := serveModules(t, "arith")
	dataDir := t.TempDir()
	noToken := func(c *operator.Config) { c.JoinToken = "" }
	op := startOperatorIn(t, ns, "", dataDir, noToken)

	first := joinSecret(t, ns)
	tok := string(first.Data[operator.JoinTokenKey])
	require.Len(t, tok, 64, "a 256-bit token, hex")
	require.NotEqual(t, joinToken, tok)
	startPropletWithToken(t, op.mqttAddr, "secret-1", tok)
	add := func(name string, a, b float64) []float64 {
		require.NoError(t, k8s.Create(t.Context(), newTask(ns, name, url+"/arith.wasm", func(s *v1.WasmTaskSpec) {
			s.Function = "add"
			s.Inputs = []float64{a, b}
		})))
		return waitPhase(t, ns, name, v1.TaskSucceeded).Status.Results
	}
	require.Equal(t, []float64{3}, add("first", 1, 2))

	addr := op.mqttAddr
	op.stop(t)
	startOperatorIn(t, ns, addr, dataDir, noToken)
	again := joinSecret(t, ns)
	require.Equal(t, first.UID, again.UID, "the Secret is reused, not replaced")
	require.Equal(t, first.ResourceVersion, again.ResourceVersion)
	require.Equal(t, []float64{7}, add("second", 3, 4))
}

// TestJoinTokenSecretRace: replicas starting together agree on one token
// (the losers of the create read the winner's Secret), a Secret created
// by hand is read as kubectl leaves it (a trailing newline from a file),
// and one without the key is an error that says so.
func TestJoinTokenSecretRace(t *testing.T) {
	ns := newNamespace(t)
	const n = 8
	toks := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { toks[i], errs[i] = operator.EnsureJoinToken(t.Context(), k8s, ns, slog.Default()) })
	}
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i])
		require.Equal(t, toks[0], toks[i])
	}
	require.Equal(t, toks[0], string(joinSecret(t, ns).Data[operator.JoinTokenKey]))

	byHand := newNamespace(t)
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: byHand, Name: operator.JoinTokenSecret},
		Data: map[string][]byte{operator.JoinTokenKey: []byte("lab-token\n")}}
	require.NoError(t, k8s.Create(t.Context(), s))
	tok, err := operator.EnsureJoinToken(t.Context(), k8s, byHand, slog.Default())
	require.NoError(t, err)
	require.Equal(t, "lab-token", tok)

	s.Data = map[string][]byte{"password": []byte("x")}
	require.NoError(t, k8s.Update(t.Context(), s))
	_, err = operator.EnsureJoinToken(t.Context(), k8s, byHand, slog.Default())
	require.ErrorContains(t, err, `has no "token" key`)
}
