package proplet

import (
	"context"
	"errors"
	"os"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/examples/exampletest"
	"github.com/absmach/propeller/proplet/agent"
	"github.com/absmach/propeller/proplet/artifact"
	"github.com/absmach/propeller/proplet/runtime"
)

// mapFetcher serves artifacts from memory by URI.
type mapFetcher map[string][]byte

func (m mapFetcher) Fetch(_ context.Context, a wire.Artifact) (artifact.Blob, error) {
	if a.Inline != nil {
		return artifact.Blob{Data: a.Inline, Digest: artifact.Digest(a.Inline)}, nil
	}
	b, ok := m[a.URI]
	if !ok {
		return artifact.Blob{}, errors.New("no such artifact " + a.URI)
	}
	return artifact.Blob{Data: b, Digest: artifact.Digest(b)}, nil
}

func newTestExecutor(t *testing.T, f Fetcher) *executor {
	t.Helper()
	rt, err := runtime.New(context.Background(), runtime.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = rt.Close(context.Background()) })
	return &executor{fetch: f, run: rt, workDir: t.TempDir()}
}

func TestExecutorPlainAndFL(t *testing.T) {
	hello := exampletest.Build(t, "hello")
	model := []byte("global model bytes")
	modelDigest := artifact.Digest(model)
	fetch := mapFetcher{wire.RelayScheme + modelDigest: model}
	x := newTestExecutor(t, fetch)
	noop := func() {}

	t.Run("plain command", func(t *testing.T) {
		out := x.Execute(context.Background(), wire.StartTask{TaskID: "t1", Attempt: 1, Artifact: wire.Artifact{Inline: hello}, CLIArgs: []string{"a"}}, noop)
		require.False(t, out.Failed(), "%s %v", out.Reason, out.Err)
		require.Nil(t, out.FL, "no FL env, no FL update")
		require.Contains(t, out.Result.Stdout, "arg[0]=a")
	})

	t.Run("FL update from file", func(t *testing.T) {
		env := map[string]string{
			EnvRoundID: "r-1", EnvModelURI: wire.BlobScheme + modelDigest, EnvJobID: "job-1",
			"HELLO_READ": "/model/model.safetensors", "HELLO_WRITE": "/out/update.safetensors",
		}
		out := x.Execute(context.Background(), wire.StartTask{TaskID: "t2", Attempt: 3, Artifact: wire.Artifact{Inline: hello}, Env: env}, noop)
		require.False(t, out.Failed(), "%s %v", out.Reason, out.Err)
		require.Contains(t, out.Result.Stdout, "file=global model bytes", "the model is mounted where MODEL_PATH says")
		require.NotNil(t, out.FL)
		require.Equal(t, wire.FLUpdate{JobID: "job-1", RoundID: "r-1", TaskID: "t2", Attempt: 3, Tensor: []byte("written by hello"), Time: out.FL.Time}, *out.FL)
	})

	t.Run("FL update from stdout", func(t *testing.T) {
		env := map[string]string{EnvRoundID: "r-1", EnvModelURI: wire.BlobScheme + modelDigest}
		out := x.Execute(context.Background(), wire.StartTask{TaskID: "t3", Attempt: 1, Artifact: wire.Artifact{Inline: hello}, Env: env}, noop)
		require.False(t, out.Failed(), "%s %v", out.Reason, out.Err)
		require.Equal(t, "hello from wasm\n", string(out.FL.Tensor))
	})

	t.Run("model is read-only", func(t *testing.T) {
		env := map[string]string{EnvRoundID: "r-1", EnvModelURI: wire.BlobScheme + modelDigest, "HELLO_WRITE": "/model/model.safetensors"}
		out := x.Execute(context.Background(), wire.StartTask{TaskID: "t4", Attempt: 1, Artifact: wire.Artifact{Inline: hello}, Env: env}, noop)
		require.True(t, out.Failed())
		require.Equal(t, wire.ReasonExitCode, out.Reason)
	})

	t.Run("data dir only when asked", func(t *testing.T) {
		env := map[string]string{"HELLO_WRITE": "/data/out.txt", "HELLO_READ": "/data/out.txt"}
		out := x.Execute(context.Background(), wire.StartTask{TaskID: "t7", Attempt: 1, Artifact: wire.Artifact{Inline: hello}, Env: env}, noop)
		require.Equal(t, wire.ReasonExitCode, out.Reason, "no /data without preopen")
		env = map[string]string{"HELLO_WRITE": "/data/out.txt"}
		out = x.Execute(context.Background(), wire.StartTask{TaskID: "t8", Attempt: 1, Artifact: wire.Artifact{Inline: hello}, Env: env, Preopen: true}, noop)
		require.False(t, out.Failed(), "%s %v", out.Reason, out.Err)
		entries, err := os.ReadDir(x.workDir)
		require.NoError(t, err)
		require.Empty(t, entries, "the attempt's /data is removed afterwards")
	})

	t.Run("missing module", func(t *testing.T) {
		out := x.Execute(context.Background(), wire.StartTask{TaskID: "t5", Attempt: 1, Artifact: wire.Artifact{URI: "https://nowhere/x.wasm"}}, noop)
		require.Equal(t, wire.ReasonArtifact, out.Reason)
		require.ErrorContains(t, out.Err, "fetch module")
	})

	t.Run("missing model", func(t *testing.T) {
		env := map[string]string{EnvRoundID: "r-1", EnvModelURI: "https://nowhere/model"}
		out := x.Execute(context.Background(), wire.StartTask{TaskID: "t6", Attempt: 1, Artifact: wire.Artifact{Inline: hello}, Env: env}, noop)
		require.Equal(t, wire.ReasonArtifact, out.Reason)
		require.ErrorContains(t, out.Err, "fetch FL model")
	})
}

// countingRelay serves blobs by digest and counts requests; down makes it
// fail like an unreachable manager.
type countingRelay struct {
	blobs map[string][]byte
	hits  atomic.Int64
	down  atomic.Bool
}

func (r *countingRelay) Fetch(_ context.Context, digest string) ([]byte, error) {
	r.hits.Add(1)
	if r.down.Load() {
		return nil, errors.New("manager unreachable")
	}
	b, ok := r.blobs[digest]
	if !ok {
		return nil, errors.New("no blob " + digest)
	}
	return b, nil
}

// TestExecutorCachedModuleUnread: with the real Fetcher, a task whose
// module is in the disk cache and compiled runs without reading the cache
// file: corrupting the file after the first run goes unnoticed by the
// second. A runtime that must compile (a restart) reads it, finds the
// corruption, drops the file and fetches the module again, or, with the
// source unreachable, fails the task with an ArtifactError.
func TestExecutorCachedModuleUnread(t *testing.T) {
	add := exampletest.Build(t, "add")
	digest := artifact.Digest(add)
	relay := &countingRelay{blobs: map[string][]byte{digest: add}}
	f, err := artifact.New(artifact.Config{CacheDir: t.TempDir(), Relay: relay})
	require.NoError(t, err)
	path, err := f.Cache().Path(digest)
	require.NoError(t, err)
	corrupt := append([]byte(nil), add...)
	corrupt[len(corrupt)-1] ^= 0xff
	st := wire.StartTask{TaskID: "t", Attempt: 1, Artifact: wire.Artifact{URI: wire.RelayScheme + digest}, Function: "add", Inputs: []float64{20, 22}}
	run := func(x *executor) agent.Outcome {
		return x.Execute(context.Background(), st, func() {})
	}
	ok := func(out agent.Outcome) {
		t.Helper()
		require.False(t, out.Failed(), "%s %v", out.Reason, out.Err)
		require.Equal(t, []float64{42}, out.Result.Results)
	}

	x := newTestExecutor(t, f)
	out := run(x)
	ok(out)
	require.False(t, out.Metrics.CacheHit)
	require.Equal(t, int64(1), relay.hits.Load())

	require.NoError(t, os.WriteFile(path, corrupt, 0o600))
	for range 3 {
		out = run(x)
		ok(out)
		require.True(t, out.Metrics.CacheHit)
	}
	onDisk, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, corrupt, onDisk, "the cache file was not read (a read would have dropped it)")
	require.Equal(t, int64(1), relay.hits.Load())

	restarted := newTestExecutor(t, f)
	out = run(restarted)
	ok(out)
	require.False(t, out.Metrics.CacheHit)
	require.Equal(t, int64(2), relay.hits.Load(), "corruption detected, module fetched again")
	onDisk, err = os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, add, onDisk)

	require.NoError(t, os.WriteFile(path, corrupt, 0o600))
	relay.down.Store(true)
	out = run(newTestExecutor(t, f))
	require.Equal(t, wire.ReasonArtifact, out.Reason)
	require.ErrorContains(t, out.Err, "gone or corrupt")
	require.ErrorContains(t, out.Err, "manager unreachable")
	require.False(t, f.Cache().Has(digest), "the corrupt copy is dropped")
	_, err = os.Stat(path)
	require.ErrorIs(t, err, os.ErrNotExist)
}

// TestExecutorFLModelFromCache: the FL model, unlike the module, is always
// read: a cached model is mounted with its bytes.
func TestExecutorFLModelFromCache(t *testing.T) {
	hello := exampletest.Build(t, "hello")
	model := []byte("global model bytes")
	md := artifact.Digest(model)
	relay := &countingRelay{blobs: map[string][]byte{md: model, artifact.Digest(hello): hello}}
	f, err := artifact.New(artifact.Config{CacheDir: t.TempDir(), Relay: relay})
	require.NoError(t, err)
	x := newTestExecutor(t, f)
	env := map[string]string{EnvRoundID: "r-1", EnvModelURI: wire.BlobScheme + md, "HELLO_READ": "/model/model.safetensors"}
	st := wire.StartTask{TaskID: "t", Attempt: 1, Artifact: wire.Artifact{URI: wire.RelayScheme + artifact.Digest(hello)}, Env: env}
	for i := range 2 {
		out := x.Execute(context.Background(), st, func() {})
		require.False(t, out.Failed(), "%s %v", out.Reason, out.Err)
		require.Contains(t, out.Result.Stdout, "file=global model bytes", "run %d", i)
	}
	require.Equal(t, int64(2), relay.hits.Load(), "module and model fetched once each")
}
