package proplet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/proplet/agent"
	"github.com/absmach/propeller/proplet/artifact"
	"github.com/absmach/propeller/proplet/runtime"
)

// Federated-learning contract between the proplet and a training module;
// docs/fl.md is the author's guide.
const (
	EnvRoundID  = "ROUND_ID"
	EnvModelURI = "MODEL_URI"
	EnvJobID    = "FL_JOB_ID"
	// EnvModelPath tells the module where the global model is (read-only).
	EnvModelPath = "MODEL_PATH"
	// EnvUpdatePath tells the module where to write its update.
	EnvUpdatePath = "UPDATE_PATH"
	// EnvMetricsPath tells the module where to write {"num_samples": n,
	// "metrics": {...}}.
	EnvMetricsPath = "METRICS_PATH"

	guestModelDir  = "/model"
	guestOutDir    = "/out"
	modelFileName  = "model.safetensors"
	updateFileName = "update.safetensors"
	metricsName    = "metrics.json"
)

// Fetcher turns an artifact reference into verified bytes.
type Fetcher interface {
	Fetch(ctx context.Context, a wire.Artifact) (artifact.Blob, error)
}

// resolver is a Fetcher that can leave a cached module unread
// (artifact.Fetcher.Resolve): the runtime loads it only when the module is
// not compiled yet, so a repeated task does not read and hash megabytes
// from disk just to find the compiled module by digest.
type resolver interface {
	Resolve(ctx context.Context, a wire.Artifact) (artifact.Blob, error)
}

// Runner runs one module.
type Runner interface {
	Run(ctx context.Context, job runtime.Job) runtime.Result
}

// executor runs start commands: fetch, (FL setup), run, collect.
type executor struct {
	fetch   Fetcher
	run     Runner
	workDir string
	timeout time.Duration
	// log, when set, records each module run (Config.ExecLog).
	log *execLog
}

var _ agent.Executor = (*executor)(nil)

// IsFLTask reports whether env marks an FL training task.
func IsFLTask(env map[string]string) bool {
	return env[EnvRoundID] != "" && env[EnvModelURI] != ""
}

func (x *executor) Execute(ctx context.Context, st wire.StartTask, running func()) agent.Outcome {
	// The attempt's deadline covers fetching too, so a slow registry cannot
	// hold a slot forever.
	timeout := x.timeout
	if st.TimeoutMS > 0 {
		timeout = time.Duration(st.TimeoutMS) * time.Millisecond
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	fetchStart := time.Now()
	fetchModule := x.fetch.Fetch
	if r, ok := x.fetch.(resolver); ok {
		fetchModule = r.Resolve
	}
	mod, err := fetchModule(ctx, st.Artifact)
	if err != nil {
		reason := wire.ReasonArtifact
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			reason = wire.ReasonDeadlineExceeded
		} else if ctx.Err() != nil {
			reason = wire.ReasonStopped
		}
		return agent.Outcome{Reason: reason, Err: fmt.Errorf("fetch module: %w", err)}
	}
	metrics := &wire.Metrics{FetchMS: time.Since(fetchStart).Milliseconds()}

	job := runtime.Job{
		Name:        st.Name,
		Wasm:        mod.Data,
		Load:        mod.Load,
		Digest:      mod.Digest,
		Function:    st.Function,
		Inputs:      st.Inputs,
		Args:        st.CLIArgs,
		Env:         st.Env,
		Stdin:       st.Stdin,
		Timeout:     timeout,
		MemoryPages: st.MemoryPages,
	}
	if st.Preopen {
		dir, err := os.MkdirTemp(x.workDir, "data-")
		if err != nil {
			return agent.Outcome{Reason: wire.ReasonInvalidTask, Err: fmt.Errorf("scratch dir: %w", err), Metrics: metrics}
		}
		defer os.RemoveAll(dir)
		job.PreopenDir = dir
	}
	var fl *flRun
	if IsFLTask(st.Env) {
		fl, err = x.prepareFL(ctx, st, &job)
		if err != nil {
			return agent.Outcome{Reason: wire.ReasonArtifact, Err: err, Metrics: metrics}
		}
		defer fl.cleanup()
	}
	running()
	x.log.record("start", st.TaskID, st.Attempt, "")
	res := x.run.Run(ctx, job)
	x.log.record("end", st.TaskID, st.Attempt, res.Reason)
	metrics.CompileMS = res.CompileDuration.Milliseconds()
	metrics.RunMS = res.RunDuration.Milliseconds()
	metrics.CacheHit = res.CacheHit
	out := agent.Outcome{
		Result: &wire.Result{
			Results:  res.Results,
			Stdout:   string(res.Stdout),
			Stderr:   string(res.Stderr),
			ExitCode: res.ExitCode,
		},
		Metrics: metrics,
		Reason:  res.Reason,
	}
	if res.Error != "" {
		out.Err = errors.New(res.Error)
	}
	if out.Failed() || fl == nil {
		return out
	}
	u, err := fl.collect(st)
	if err != nil {
		out.Reason, out.Err = wire.ReasonInvalidTask, err
		return out
	}
	out.FL = u
	return out
}

// flRun is the scratch space of one FL attempt.
type flRun struct {
	dir      string
	modelDir string
	outDir   string
	stdout   *bytes.Buffer
}

func (f *flRun) cleanup() { _ = os.RemoveAll(f.dir) }

// prepareFL fetches the global model and mounts it read-only at /model,
// with a writable /out for the update. The model is fetched with Fetch,
// not Resolve: its bytes are always needed.
func (x *executor) prepareFL(ctx context.Context, st wire.StartTask, job *runtime.Job) (*flRun, error) {
	model, err := x.fetch.Fetch(ctx, modelArtifact(st.Env[EnvModelURI]))
	if err != nil {
		return nil, fmt.Errorf("fetch FL model %s: %w", st.Env[EnvModelURI], err)
	}
	dir, err := os.MkdirTemp(x.workDir, "fl-")
	if err != nil {
		return nil, fmt.Errorf("fl scratch dir: %w", err)
	}
	f := &flRun{dir: dir, modelDir: filepath.Join(dir, "model"), outDir: filepath.Join(dir, "out"), stdout: &bytes.Buffer{}}
	for _, d := range []string{f.modelDir, f.outDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			f.cleanup()
			return nil, fmt.Errorf("fl scratch dir: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(f.modelDir, modelFileName), model.Data, 0o400); err != nil {
		f.cleanup()
		return nil, fmt.Errorf("fl model: %w", err)
	}
	env := make(map[string]string, len(job.Env)+3)
	for k, v := range job.Env {
		env[k] = v
	}
	env[EnvModelPath] = guestModelDir + "/" + modelFileName
	env[EnvUpdatePath] = guestOutDir + "/" + updateFileName
	env[EnvMetricsPath] = guestOutDir + "/" + metricsName
	job.Env = env
	job.Mounts = append(job.Mounts,
		runtime.Mount{HostDir: f.modelDir, GuestPath: guestModelDir, ReadOnly: true},
		runtime.Mount{HostDir: f.outDir, GuestPath: guestOutDir},
	)
	job.Stdout = f.stdout
	return f, nil
}

// modelArtifact maps MODEL_URI to an artifact: blob:// (the manager's
// store) is fetched through the relay like a module.
func modelArtifact(uri string) wire.Artifact {
	if d, ok := strings.CutPrefix(uri, wire.BlobScheme); ok {
		return wire.Artifact{URI: wire.RelayScheme + d, Digest: d}
	}
	if d, ok := strings.CutPrefix(uri, wire.RelayScheme); ok {
		return wire.Artifact{URI: uri, Digest: d}
	}
	return wire.Artifact{URI: uri}
}

// flMetrics is what a module writes to METRICS_PATH.
type flMetrics struct {
	NumSamples int64              `json:"num_samples"`
	Metrics    map[string]float64 `json:"metrics"`
}

// collect reads the module's update: the file at UPDATE_PATH, or its whole
// stdout when it wrote no file.
func (f *flRun) collect(st wire.StartTask) (*wire.FLUpdate, error) {
	tensor, err := os.ReadFile(filepath.Join(f.outDir, updateFileName))
	if errors.Is(err, os.ErrNotExist) {
		tensor = f.stdout.Bytes()
	} else if err != nil {
		return nil, fmt.Errorf("read FL update: %w", err)
	}
	if len(tensor) == 0 {
		return nil, fmt.Errorf("FL module wrote no update to %s or stdout", EnvUpdatePath)
	}
	var m flMetrics
	raw, err := os.ReadFile(filepath.Join(f.outDir, metricsName))
	switch {
	case err == nil:
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, fmt.Errorf("FL metrics file: %w", err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("read FL metrics: %w", err)
	}
	if m.NumSamples < 0 {
		return nil, fmt.Errorf("FL metrics: negative num_samples")
	}
	return &wire.FLUpdate{
		JobID:      st.Env[EnvJobID],
		RoundID:    st.Env[EnvRoundID],
		TaskID:     st.TaskID,
		Attempt:    st.Attempt,
		NumSamples: m.NumSamples,
		Metrics:    m.Metrics,
		Tensor:     tensor,
		Time:       time.Now(),
	}, nil
}
