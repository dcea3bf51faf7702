package rest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"

	api "github.com/absmach/propeller/api/rest"
	"github.com/absmach/propeller/api/safetensors"
	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/manager/blobs"
	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/orchestration/fl"
)

// FLJobs is what the API needs from the FL coordinator.
type FLJobs interface {
	Create(ctx context.Context, spec fl.JobSpec) (fl.Job, error)
	CreateNamed(ctx context.Context, id string, spec fl.JobSpec) (fl.Job, error)
	Get(ctx context.Context, id string) (fl.Job, error)
	List(ctx context.Context) ([]fl.Job, error)
	Stop(ctx context.Context, id, message string) (fl.Job, error)
	Checkpoints(ctx context.Context, id string) ([]fl.Checkpoint, error)
}

// FLBlobs stores inline models and modules and serves models by digest.
type FLBlobs interface {
	PutBytes(b []byte) (string, error)
	Blob(ctx context.Context, digest string) ([]byte, error)
}

// FL enables the federated-learning routes.
type FL struct {
	Jobs  FLJobs
	Blobs FLBlobs
}

type flRoutes struct {
	FL
	maxUpload int64
}

// jobIDForKey derives a job id from an Idempotency-Key: a retry names
// the same job, so it finds the job instead of creating a second. The id
// is a UUID (version 8, RFC 9562) like the ids the coordinator makes.
func jobIDForKey(key string) string {
	sum := sha256.Sum256([]byte("propeller/federated-job\x00" + key))
	b := sum[:16]
	b[6] = b[6]&0x0f | 0x80
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// jobSpec turns the request into the coordinator's spec, storing inline
// payloads in the blob store.
func (r *flRoutes) jobSpec(req api.FederatedJobRequest) (fl.JobSpec, error) {
	spec := fromJobSpec(req.FederatedJobSpec)
	if len(req.InitialModel) > 0 {
		if spec.ModelRef != "" {
			return spec, api.NewProblem(api.CodeInvalidRequest, "give initialModel or modelRef, not both")
		}
		if _, err := safetensors.Decode(req.InitialModel); err != nil {
			return spec, api.Problemf(api.CodeInvalidRequest, "initialModel is not a safetensors model: %v", err)
		}
		d, err := r.Blobs.PutBytes(req.InitialModel)
		if err != nil {
			return spec, fmt.Errorf("store initial model: %w", err)
		}
		spec.ModelRef = wire.BlobScheme + d
	}
	if len(req.TaskWasm) > 0 {
		if spec.TaskWasmImage != "" {
			return spec, api.NewProblem(api.CodeInvalidRequest, "give taskWasm or taskWasmImage, not both")
		}
		if int64(len(req.TaskWasm)) > r.maxUpload {
			return spec, api.Problemf(api.CodePayloadTooLarge, "taskWasm too large: the limit is %d bytes", r.maxUpload)
		}
		if err := checkWasm("taskWasm", req.TaskWasm); err != nil {
			return spec, err
		}
		d, err := r.Blobs.PutBytes(req.TaskWasm)
		if err != nil {
			return spec, fmt.Errorf("store module: %w", err)
		}
		spec.TaskWasmImage = wire.BlobScheme + d
	}
	return spec, nil
}

func (r *flRoutes) create(c echo.Context) error {
	var req api.FederatedJobRequest
	// Two inline payloads, base64: each a third larger.
	if err := decodeJSON(c, r.maxUpload*8/3+64<<10, &req); err != nil {
		return err
	}
	spec, err := r.jobSpec(req)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	var key string
	if vals := c.Request().Header.Values(api.HeaderIdempotencyKey); len(vals) > 0 {
		if key, err = checkIdempotencyKey(vals); err != nil {
			return err
		}
	}
	var j fl.Job
	if key == "" {
		j, err = r.Jobs.Create(ctx, spec)
	} else {
		j, err = r.createOnce(ctx, key, spec)
		if errors.Is(err, errReplayed) {
			c.Response().Header().Set(api.HeaderIdempotentReplay, "true")
			err = nil
		}
	}
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, "/v1/federated-jobs/"+url.PathEscape(j.ID))
	return c.JSON(http.StatusCreated, toJob(j))
}

// errReplayed says createOnce found the job a first request made.
var errReplayed = errors.New("replayed")

// createOnce creates the job the key names, or finds it: the same spec is
// the first job again (errReplayed), another spec a reused key. Inline
// payloads become digests in the spec, so the same bytes compare equal.
func (r *flRoutes) createOnce(ctx context.Context, key string, spec fl.JobSpec) (fl.Job, error) {
	id := jobIDForKey(key)
	j, err := r.Jobs.CreateNamed(ctx, id, spec)
	if !errors.Is(err, orchestration.ErrExists) {
		return j, err
	}
	if j, err = r.Jobs.Get(ctx, id); err != nil {
		return j, err
	}
	first, err1 := json.Marshal(j.Spec)
	again, err2 := json.Marshal(spec)
	if err := errors.Join(err1, err2); err != nil {
		return j, err
	}
	if !bytes.Equal(first, again) {
		return j, api.Problemf(api.CodeIdempotencyKeyReused,
			"Idempotency-Key %q created federated job %q with a different spec; use a new key for a new job", key, id)
	}
	return j, errReplayed
}

// list pages oldest first: the coordinator returns every job.
func (r *flRoutes) list(c echo.Context) error {
	jobs, err := r.Jobs.List(c.Request().Context())
	if err != nil {
		return err
	}
	page, next, err := pageOf(c, jobs, func(j fl.Job) string {
		return seqKey(j.Status.CreatedAt.UnixNano()) + "/" + j.ID
	})
	if err != nil {
		return err
	}
	out := api.FederatedJobList{Items: make([]api.FederatedJob, 0, len(page)), Continue: next}
	for _, j := range page {
		out.Items = append(out.Items, toJob(j))
	}
	return c.JSON(http.StatusOK, out)
}

func (r *flRoutes) get(c echo.Context) error {
	j, err := r.Jobs.Get(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toJob(j))
}

func (r *flRoutes) stop(c echo.Context) error {
	j, err := r.Jobs.Stop(c.Request().Context(), c.Param("id"), "stopped over the REST API")
	if errors.Is(err, orchestration.ErrTerminal) {
		return api.Problemf(api.CodeConflict, "federated job %q already finished", c.Param("id"))
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toJob(j))
}

// checkpoints pages by position: a job only ever appends checkpoints.
func (r *flRoutes) checkpoints(c echo.Context) error {
	cps, err := r.Jobs.Checkpoints(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	type numbered struct {
		n  int
		cp fl.Checkpoint
	}
	all := make([]numbered, len(cps))
	for i, cp := range cps {
		all[i] = numbered{i, cp}
	}
	page, next, err := pageOf(c, all, func(x numbered) string { return seqKey(int64(x.n)) })
	if err != nil {
		return err
	}
	out := make([]fl.Checkpoint, 0, len(page))
	for _, x := range page {
		out = append(out, x.cp)
	}
	return c.JSON(http.StatusOK, api.CheckpointList{Items: toCheckpoints(out), Continue: next})
}

func (r *flRoutes) model(c echo.Context) error {
	d := c.Param("digest")
	if !strings.HasPrefix(d, "sha256:") {
		d = "sha256:" + d
	}
	if !orchestration.ValidDigest(d) {
		return api.Problemf(api.CodeInvalidRequest, "digest %q: want sha256:<64 lowercase hex>", c.Param("digest"))
	}
	b, err := r.Blobs.Blob(c.Request().Context(), d)
	if errors.Is(err, blobs.ErrNotFound) || errors.Is(err, orchestration.ErrNotFound) {
		return api.Problemf(api.CodeNotFound, "model %q not found", d)
	}
	if err != nil {
		return err
	}
	c.Response().Header().Set(api.HeaderDockerContentDigest, d)
	return c.Blob(http.StatusOK, echo.MIMEOctetStream, b)
}
