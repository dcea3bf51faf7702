package standalone

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/absmach/propeller/api/rest"
	"github.com/absmach/propeller/api/wire"
	"github.com/absmach/propeller/manager/blobs"
	"github.com/absmach/propeller/orchestration"
)

// Engine is what the REST API needs from the orchestration engine.
type Engine interface {
	Submit(ctx context.Context, spec orchestration.TaskSpec) (orchestration.Task, error)
	Start(ctx context.Context, id string) (orchestration.Task, error)
	Stop(ctx context.Context, id, message string) (orchestration.Task, error)
	Delete(ctx context.Context, id string) error
	EditSuspended(ctx context.Context, id string, fn func(*orchestration.TaskSpec) error) (orchestration.Task, error)
	Get(ctx context.Context, id string) (orchestration.Task, error)
	List(ctx context.Context, f orchestration.TaskFilter) (orchestration.TaskPage, error)
	Proplets(ctx context.Context) ([]orchestration.Proplet, error)
	Proplet(ctx context.Context, id string) (orchestration.Proplet, error)
	RemoveProplet(ctx context.Context, id string) error
}

// BlobStore keeps uploaded modules.
type BlobStore interface {
	PutBytes(b []byte) (digest string, err error)
}

// API is the REST frontend over the engine.
type API struct {
	engine         Engine
	blobs          BlobStore
	token          string
	maxUploadBytes int64
	ready          func() error
	openapi        []byte
	creds          *Credentials
}

// APIConfig configures NewAPI.
type APIConfig struct {
	Engine Engine
	Blobs  BlobStore
	// Token is the bearer token every route but health, metrics and the
	// OpenAPI document requires.
	Token          string
	MaxUploadBytes int64
	// Ready reports whether the manager can serve (broker connected).
	Ready func() error
	// Metrics serves /metrics; nil disables it.
	Metrics http.Handler
	// FL serves the federated-learning routes; nil disables them.
	FL *FLAPI
	// Credentials manages per-proplet MQTT secrets; nil (an external
	// broker) answers the credential routes with 501.
	Credentials *Credentials
}

// NewAPI builds the echo server with every route.
func NewAPI(cfg APIConfig) (*echo.Echo, error) {
	spec, err := openAPIJSON()
	if err != nil {
		return nil, err
	}
	if cfg.MaxUploadBytes <= 0 {
		cfg.MaxUploadBytes = 32 << 20
	}
	if cfg.Ready == nil {
		cfg.Ready = func() error { return nil }
	}
	a := &API{engine: cfg.Engine, blobs: cfg.Blobs, token: cfg.Token, maxUploadBytes: cfg.MaxUploadBytes, ready: cfg.Ready, openapi: spec, creds: cfg.Credentials}

	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = errorHandler

	e.GET("/healthz", func(c echo.Context) error { return c.JSON(http.StatusOK, map[string]string{"status": "ok"}) })
	e.GET("/readyz", a.readyz)
	e.GET("/v1/openapi.json", func(c echo.Context) error { return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, a.openapi) })
	if cfg.Metrics != nil {
		e.GET("/metrics", echo.WrapHandler(cfg.Metrics))
	}

	g := e.Group("/v1", a.auth)
	g.POST("/tasks", a.createTask)
	g.GET("/tasks", a.listTasks)
	g.GET("/tasks/:id", a.getTask)
	g.DELETE("/tasks/:id", a.deleteTask)
	g.POST("/tasks/:id/start", a.startTask)
	g.POST("/tasks/:id/stop", a.stopTask)
	g.PUT("/tasks/:id/wasm", a.uploadWasm)
	g.GET("/proplets", a.listProplets)
	g.GET("/proplets/:id", a.getProplet)
	g.DELETE("/proplets/:id", a.deleteProplet)
	g.POST("/proplets/:id/credentials", a.issueCredential)
	g.GET("/proplets/:id/credentials", a.getCredential)
	g.DELETE("/proplets/:id/credentials", a.revokeCredential)
	registerFL(g, cfg)
	return e, nil
}

func (a *API) auth(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Request().Header.Get(echo.HeaderAuthorization)
		tok, ok := strings.CutPrefix(h, "Bearer ")
		if !ok || tok == "" {
			c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="propeller"`)
			return rest.NewProblem(rest.CodeUnauthorized, "missing bearer token: send Authorization: Bearer <token>; the token is in <data-dir>/api-token")
		}
		if subtle.ConstantTimeCompare([]byte(tok), []byte(a.token)) != 1 {
			return rest.NewProblem(rest.CodeUnauthorized, "invalid bearer token")
		}
		return next(c)
	}
}

func (a *API) readyz(c echo.Context) error {
	if err := a.ready(); err != nil {
		return rest.NewProblem(rest.CodeUnavailable, "not ready: "+err.Error())
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func toResponse(t orchestration.Task) rest.Task {
	pinned := t.Spec.PropletID
	st := t.Status
	r := rest.Task{
		ID: t.ID, Name: t.Spec.Name, Phase: string(st.Phase),
		ImageURL: t.Spec.Image, Digest: t.Spec.Digest, Function: t.Spec.Function,
		Inputs: t.Spec.Inputs, CLIArgs: t.Spec.CLIArgs, Env: t.Spec.Env, Labels: t.Spec.Labels,
		TimeoutSeconds: t.Spec.Timeout.Seconds(), MaxAttempts: t.Spec.MaxAttempts,
		MemoryPages: t.Spec.MemoryPages, MemoryBytes: t.Spec.MemoryBytes,
		Selector: t.Spec.Selector, Suspend: t.Spec.Suspend, Preopen: t.Spec.Preopen,
		PropletID: st.PropletID, PropletIDs: t.Spec.PropletIDs, Attempt: st.Attempt,
		Results: st.Results, Stdout: st.Stdout, Stderr: st.Stderr, ExitCode: st.ExitCode,
		Reason: st.Reason, Message: st.Message, LastFailure: st.LastFailure,
		CreatedAt: st.CreatedAt, UpdatedAt: st.UpdatedAt,
		ScheduledAt: timePtr(st.ScheduledAt), StartedAt: timePtr(st.StartedAt), FinishedAt: timePtr(st.FinishedAt),
	}
	if r.PropletID == "" {
		r.PropletID = pinned
	}
	return r
}

// wasmMagic opens every WebAssembly binary (magic + version 1).
var wasmMagic = []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}

func checkWasm(field string, b []byte) error {
	if !bytes.HasPrefix(b, wasmMagic) {
		return rest.Problemf(rest.CodeInvalidRequest, "%s is not a WebAssembly module: a module starts with \\0asm and version 1", field)
	}
	return nil
}

// decodeJSON reads a JSON body into v: 415 for another content type, 413
// past limit, 400 for malformed JSON or unknown fields.
func decodeJSON(c echo.Context, limit int64, v any) error {
	ct := c.Request().Header.Get(echo.HeaderContentType)
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != echo.MIMEApplicationJSON {
		return rest.Problemf(rest.CodeUnsupportedMediaType, "Content-Type %q: want application/json", ct)
	}
	body := http.MaxBytesReader(c.Response(), c.Request().Body, limit)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return rest.Problemf(rest.CodePayloadTooLarge, "request body too large: the limit is %d bytes", limit)
		}
		return rest.Problemf(rest.CodeMalformedBody, "malformed JSON body: %v", err)
	}
	if dec.More() {
		return rest.NewProblem(rest.CodeMalformedBody, "malformed JSON body: trailing data after the JSON object")
	}
	return nil
}

func (a *API) createTask(c echo.Context) error {
	var req rest.TaskRequest
	// Base64 inflates the module by a third.
	if err := decodeJSON(c, a.maxUploadBytes*4/3+64<<10, &req); err != nil {
		return err
	}
	if req.TimeoutSeconds < 0 {
		return rest.NewProblem(rest.CodeInvalidRequest, "timeoutSeconds must not be negative")
	}
	spec := orchestration.TaskSpec{
		Name: req.Name, Image: req.ImageURL, Digest: req.Digest, Function: req.Function,
		Inputs: req.Inputs, CLIArgs: req.CLIArgs, Env: req.Env, Labels: req.Labels,
		Timeout:     time.Duration(req.TimeoutSeconds * float64(time.Second)),
		MaxAttempts: req.MaxAttempts, MemoryPages: req.MemoryPages, MemoryBytes: req.MemoryBytes, Preopen: req.Preopen,
		PropletID: req.PropletID, PropletIDs: req.PropletIDs, Selector: req.Selector, Suspend: req.Suspend,
	}
	switch {
	case len(req.File) > 0 && req.ImageURL != "":
		return rest.NewProblem(rest.CodeInvalidRequest, "give file or imageUrl, not both")
	case len(req.File) > 0:
		if int64(len(req.File)) > a.maxUploadBytes {
			return rest.Problemf(rest.CodePayloadTooLarge, "module too large: the limit is %d bytes", a.maxUploadBytes)
		}
		if err := checkWasm("file", req.File); err != nil {
			return err
		}
		d, err := a.blobs.PutBytes(req.File)
		if err != nil {
			return fmt.Errorf("store module: %w", err)
		}
		spec.Image, spec.Digest = wire.BlobScheme+d, d
	case req.ImageURL == "" && !req.Suspend:
		return rest.NewProblem(rest.CodeInvalidRequest, "give file or imageUrl, or suspend: true to upload the module later with PUT /v1/tasks/{id}/wasm")
	}
	t, err := a.engine.Submit(c.Request().Context(), spec)
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, "/v1/tasks/"+url.PathEscape(t.ID))
	return c.JSON(http.StatusCreated, toResponse(t))
}

func (a *API) getTask(c echo.Context) error {
	t, err := a.engine.Get(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toResponse(t))
}

func (a *API) listTasks(c echo.Context) error {
	q := c.QueryParams()
	f := orchestration.TaskFilter{PropletID: q.Get("propletId"), Continue: q.Get("continue")}
	for _, s := range q["phase"] {
		for _, p := range strings.Split(s, ",") {
			ph := orchestration.Phase(p)
			if !ph.Valid() {
				return rest.Problemf(rest.CodeInvalidRequest, "phase %q is not a task phase (Pending, Scheduled, Running, Succeeded, Failed, Cancelled)", p)
			}
			f.Phases = append(f.Phases, ph)
		}
	}
	for _, l := range q["label"] {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return rest.Problemf(rest.CodeInvalidRequest, "label %q: want label=key=value", l)
		}
		if f.Labels == nil {
			f.Labels = map[string]string{}
		}
		f.Labels[k] = v
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > 1000 {
			return rest.Problemf(rest.CodeInvalidRequest, "limit %q: want an integer from 0 to 1000", s)
		}
		f.Limit = n
	}
	page, err := a.engine.List(c.Request().Context(), f)
	if err != nil {
		return err
	}
	out := rest.TaskList{Items: make([]rest.Task, 0, len(page.Tasks)), Continue: page.Continue}
	for _, t := range page.Tasks {
		out.Items = append(out.Items, toResponse(t))
	}
	return c.JSON(http.StatusOK, out)
}

func (a *API) startTask(c echo.Context) error {
	t, err := a.engine.Start(c.Request().Context(), c.Param("id"))
	if errors.Is(err, orchestration.ErrNoChange) {
		return rest.Problemf(rest.CodeConflict, "task %q is not suspended: it was started already and is %s", t.ID, t.Status.Phase)
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toResponse(t))
}

func (a *API) stopTask(c echo.Context) error {
	t, err := a.engine.Stop(c.Request().Context(), c.Param("id"), "stopped over the REST API")
	if errors.Is(err, orchestration.ErrTerminal) {
		return rest.Problemf(rest.CodeConflict, "task %q already finished: it is %s", t.ID, t.Status.Phase)
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toResponse(t))
}

func (a *API) deleteTask(c echo.Context) error {
	if err := a.engine.Delete(c.Request().Context(), c.Param("id")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (a *API) uploadWasm(c echo.Context) error {
	ct := c.Request().Header.Get(echo.HeaderContentType)
	if mt, _, _ := mime.ParseMediaType(ct); mt != "application/wasm" && mt != echo.MIMEOctetStream {
		return rest.Problemf(rest.CodeUnsupportedMediaType, "Content-Type %q: want application/wasm or application/octet-stream", ct)
	}
	ctx := c.Request().Context()
	id := c.Param("id")
	if _, err := a.engine.Get(ctx, id); err != nil {
		return err
	}
	body := http.MaxBytesReader(c.Response(), c.Request().Body, a.maxUploadBytes)
	b, err := io.ReadAll(body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return rest.Problemf(rest.CodePayloadTooLarge, "module too large: the limit is %d bytes", a.maxUploadBytes)
		}
		return rest.Problemf(rest.CodeMalformedBody, "cannot read the body: %v", err)
	}
	if err := checkWasm("body", b); err != nil {
		return err
	}
	d, err := a.blobs.PutBytes(b)
	if err != nil {
		return fmt.Errorf("store module: %w", err)
	}
	t, err := a.engine.EditSuspended(ctx, id, func(s *orchestration.TaskSpec) error {
		s.Image, s.Digest = wire.BlobScheme+d, d
		return nil
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toResponse(t))
}

func toProplet(p orchestration.Proplet) rest.Proplet {
	r := rest.Proplet{
		ID: p.ID, Alive: p.Alive, Labels: p.Labels, Slots: p.Slots, MemoryBytes: p.MemoryBytes,
		Runtime: p.Runtime, Version: p.Version, LastSeen: timePtr(p.LastSeen), Running: p.Running,
	}
	if r.Running == nil {
		r.Running = []string{}
	}
	return r
}

func (a *API) listProplets(c echo.Context) error {
	ps, err := a.engine.Proplets(c.Request().Context())
	if err != nil {
		return err
	}
	out := rest.PropletList{Items: make([]rest.Proplet, 0, len(ps))}
	for _, p := range ps {
		out.Items = append(out.Items, toProplet(p))
	}
	return c.JSON(http.StatusOK, out)
}

func (a *API) getProplet(c echo.Context) error {
	p, err := a.engine.Proplet(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toProplet(p))
}

func (a *API) deleteProplet(c echo.Context) error {
	if err := a.engine.RemoveProplet(c.Request().Context(), c.Param("id")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

var _ BlobStore = (*blobs.Store)(nil)
