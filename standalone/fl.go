package standalone

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/absmach/propeller/api/rest"
	"github.com/absmach/propeller/api/safetensors"
	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/manager/blobs"
	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/orchestration/fl"
)

// FLJobs is what the REST API needs from the FL coordinator.
type FLJobs interface {
	Create(ctx context.Context, spec fl.JobSpec) (fl.Job, error)
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

// FLAPI enables the federated-learning routes.
type FLAPI struct {
	Jobs  FLJobs
	Blobs FLBlobs
}

type flRoutes struct {
	FLAPI
	maxUpload int64
}

// registerFL adds the federated-learning routes to the authenticated group.
func registerFL(g *echo.Group, cfg APIConfig) {
	if cfg.FL == nil {
		return
	}
	r := &flRoutes{FLAPI: *cfg.FL, maxUpload: cfg.MaxUploadBytes}
	g.POST("/federated-jobs", r.create)
	g.GET("/federated-jobs", r.list)
	g.GET("/federated-jobs/:id", r.get)
	g.POST("/federated-jobs/:id/stop", r.stop)
	g.GET("/federated-jobs/:id/checkpoints", r.checkpoints)
	g.GET("/models/:digest", r.model)
}

func (r *flRoutes) create(c echo.Context) error {
	var req rest.FederatedJobRequest
	// Two inline payloads, base64: each a third larger.
	if err := decodeJSON(c, r.maxUpload*8/3+64<<10, &req); err != nil {
		return err
	}
	spec := fromJobSpec(req.FederatedJobSpec)
	if len(req.InitialModel) > 0 {
		if spec.ModelRef != "" {
			return rest.NewProblem(rest.CodeInvalidRequest, "give initialModel or modelRef, not both")
		}
		if _, err := safetensors.Decode(req.InitialModel); err != nil {
			return rest.Problemf(rest.CodeInvalidRequest, "initialModel is not a safetensors model: %v", err)
		}
		d, err := r.Blobs.PutBytes(req.InitialModel)
		if err != nil {
			return fmt.Errorf("store initial model: %w", err)
		}
		spec.ModelRef = wire.BlobScheme + d
	}
	if len(req.TaskWasm) > 0 {
		if spec.TaskWasmImage != "" {
			return rest.NewProblem(rest.CodeInvalidRequest, "give taskWasm or taskWasmImage, not both")
		}
		if int64(len(req.TaskWasm)) > r.maxUpload {
			return rest.Problemf(rest.CodePayloadTooLarge, "taskWasm too large: the limit is %d bytes", r.maxUpload)
		}
		if err := checkWasm("taskWasm", req.TaskWasm); err != nil {
			return err
		}
		d, err := r.Blobs.PutBytes(req.TaskWasm)
		if err != nil {
			return fmt.Errorf("store module: %w", err)
		}
		spec.TaskWasmImage = wire.BlobScheme + d
	}
	j, err := r.Jobs.Create(c.Request().Context(), spec)
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, "/v1/federated-jobs/"+url.PathEscape(j.ID))
	return c.JSON(http.StatusCreated, toJob(j))
}

func (r *flRoutes) list(c echo.Context) error {
	jobs, err := r.Jobs.List(c.Request().Context())
	if err != nil {
		return err
	}
	out := rest.FederatedJobList{Items: make([]rest.FederatedJob, 0, len(jobs))}
	for _, j := range jobs {
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
		return rest.Problemf(rest.CodeConflict, "federated job %q already finished", c.Param("id"))
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toJob(j))
}

func (r *flRoutes) checkpoints(c echo.Context) error {
	cps, err := r.Jobs.Checkpoints(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, rest.CheckpointList{Items: toCheckpoints(cps)})
}

func (r *flRoutes) model(c echo.Context) error {
	d := c.Param("digest")
	if !strings.HasPrefix(d, "sha256:") {
		d = "sha256:" + d
	}
	if !orchestration.ValidDigest(d) {
		return rest.Problemf(rest.CodeInvalidRequest, "digest %q: want sha256:<64 lowercase hex>", c.Param("digest"))
	}
	b, err := r.Blobs.Blob(c.Request().Context(), d)
	if errors.Is(err, blobs.ErrNotFound) || errors.Is(err, orchestration.ErrNotFound) {
		return rest.Problemf(rest.CodeNotFound, "model %q not found", d)
	}
	if err != nil {
		return err
	}
	c.Response().Header().Set("Docker-Content-Digest", d)
	return c.Blob(http.StatusOK, echo.MIMEOctetStream, b)
}
