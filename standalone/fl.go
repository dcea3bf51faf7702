package standalone

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/absmach/propeller/api/safetensors"
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

// FederatedJobRequest is the body of POST /federated-jobs: the FederatedJob
// spec, plus optional inline bytes for the initial model and the training
// module, stored in the manager's blob store and referenced from the spec.
type FederatedJobRequest struct {
	fl.JobSpec
	// InitialModel is a safetensors file (base64); it sets modelRef.
	InitialModel []byte `json:"initialModel,omitempty"`
	// TaskWasm is the training module (base64); it sets taskWasmImage.
	TaskWasm []byte `json:"taskWasm,omitempty"`
}

// FederatedJobList is the body of GET /federated-jobs.
type FederatedJobList struct {
	Jobs []fl.Job `json:"jobs"`
}

// CheckpointList is the body of GET /federated-jobs/{id}/checkpoints.
type CheckpointList struct {
	Checkpoints []fl.Checkpoint `json:"checkpoints"`
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
	var req FederatedJobRequest
	// Two inline payloads, base64: each a third larger.
	if err := decodeJSON(c, r.maxUpload*8/3+64<<10, &req); err != nil {
		return err
	}
	spec := req.JobSpec
	if len(req.InitialModel) > 0 {
		if spec.ModelRef != "" {
			return httpError(http.StatusBadRequest, "invalid request", "give initialModel or modelRef, not both")
		}
		if _, err := safetensors.Decode(req.InitialModel); err != nil {
			return httpError(http.StatusBadRequest, "invalid initialModel", err.Error())
		}
		d, err := r.Blobs.PutBytes(req.InitialModel)
		if err != nil {
			return fmt.Errorf("store initial model: %w", err)
		}
		spec.ModelRef = "blob://" + d
	}
	if len(req.TaskWasm) > 0 {
		if spec.TaskWasmImage != "" {
			return httpError(http.StatusBadRequest, "invalid request", "give taskWasm or taskWasmImage, not both")
		}
		if int64(len(req.TaskWasm)) > r.maxUpload {
			return httpError(http.StatusRequestEntityTooLarge, "module too large", fmt.Sprintf("limit is %d bytes", r.maxUpload))
		}
		if err := checkWasm(req.TaskWasm); err != nil {
			return err
		}
		d, err := r.Blobs.PutBytes(req.TaskWasm)
		if err != nil {
			return fmt.Errorf("store module: %w", err)
		}
		spec.TaskWasmImage = "blob://" + d
	}
	j, err := r.Jobs.Create(c.Request().Context(), spec)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, j)
}

func (r *flRoutes) list(c echo.Context) error {
	jobs, err := r.Jobs.List(c.Request().Context())
	if err != nil {
		return err
	}
	if jobs == nil {
		jobs = []fl.Job{}
	}
	return c.JSON(http.StatusOK, FederatedJobList{Jobs: jobs})
}

func (r *flRoutes) get(c echo.Context) error {
	j, err := r.Jobs.Get(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, j)
}

func (r *flRoutes) stop(c echo.Context) error {
	j, err := r.Jobs.Stop(c.Request().Context(), c.Param("id"), "stopped over the REST API")
	if errors.Is(err, orchestration.ErrTerminal) {
		return httpError(http.StatusConflict, "federated job already finished", err.Error())
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, j)
}

func (r *flRoutes) checkpoints(c echo.Context) error {
	cps, err := r.Jobs.Checkpoints(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	if cps == nil {
		cps = []fl.Checkpoint{}
	}
	return c.JSON(http.StatusOK, CheckpointList{Checkpoints: cps})
}

func (r *flRoutes) model(c echo.Context) error {
	d := c.Param("digest")
	if !strings.HasPrefix(d, "sha256:") {
		d = "sha256:" + d
	}
	if !orchestration.ValidDigest(d) {
		return httpError(http.StatusBadRequest, "invalid digest", "want sha256:<64 lowercase hex>")
	}
	b, err := r.Blobs.Blob(c.Request().Context(), d)
	if errors.Is(err, blobs.ErrNotFound) || errors.Is(err, orchestration.ErrNotFound) {
		return httpError(http.StatusNotFound, "model not found", d)
	}
	if err != nil {
		return err
	}
	c.Response().Header().Set("Docker-Content-Digest", d)
	return c.Blob(http.StatusOK, echo.MIMEOctetStream, b)
}
