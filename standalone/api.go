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
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/absmach/propeller/manager/blobs"
	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/orchestration/fl"
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

// Error is the body of every error response.
type Error struct {
	Message string `json:"error"`
	Details string `json:"details,omitempty"`
}

func (e Error) Error() string {
	if e.Details == "" {
		return e.Message
	}
	return e.Message + ": " + e.Details
}

// httpError builds an echo error whose body is an Error.
func httpError(code int, msg string, details ...string) *echo.HTTPError {
	return echo.NewHTTPError(code, Error{Message: msg, Details: strings.Join(details, "; ")})
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
	e.GET("/openapi.json", func(c echo.Context) error { return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, a.openapi) })
	if cfg.Metrics != nil {
		e.GET("/metrics", echo.WrapHandler(cfg.Metrics))
	}

	g := e.Group("", a.auth)
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
			return httpError(http.StatusUnauthorized, "missing bearer token", "send Authorization: Bearer <token>; the token is in <data-dir>/api-token")
		}
		if subtle.ConstantTimeCompare([]byte(tok), []byte(a.token)) != 1 {
			return httpError(http.StatusUnauthorized, "invalid bearer token")
		}
		return next(c)
	}
}

func (a *API) readyz(c echo.Context) error {
	if err := a.ready(); err != nil {
		return httpError(http.StatusServiceUnavailable, "not ready", err.Error())
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}

// errorHandler answers every error as JSON. Engine errors map to status
// codes here, once: a user's mistake is a 4xx, never a 500.
func errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	code, body := http.StatusInternalServerError, Error{Message: "internal error"}
	var he *echo.HTTPError
	switch {
	case errors.As(err, &he):
		code = he.Code
		switch m := he.Message.(type) {
		case Error:
			body = m
		case string:
			body = Error{Message: m}
		default:
			body = Error{Message: http.StatusText(code)}
		}
	case errors.Is(err, orchestration.ErrInvalid):
		code, body = http.StatusBadRequest, Error{Message: "invalid request", Details: err.Error()}
	case errors.Is(err, fl.ErrModelUnavailable):
		code, body = http.StatusBadGateway, Error{Message: "model registry unavailable", Details: err.Error()}
	case errors.Is(err, orchestration.ErrNotFound):
		code, body = http.StatusNotFound, Error{Message: "not found", Details: err.Error()}
	case errors.Is(err, orchestration.ErrTerminal), errors.Is(err, orchestration.ErrConflict), errors.Is(err, orchestration.ErrExists):
		code, body = http.StatusConflict, Error{Message: "conflict", Details: err.Error()}
	default:
		c.Logger().Error(err)
	}
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(code)
		return
	}
	_ = c.JSON(code, body)
}

// TaskRequest is the body of POST /tasks; see docs/openapi.yaml.
type TaskRequest struct {
	Name           string            `json:"name"`
	File           []byte            `json:"file,omitempty"`
	ImageURL       string            `json:"image_url,omitempty"`
	Digest         string            `json:"digest,omitempty"`
	Function       string            `json:"function,omitempty"`
	Inputs         []float64         `json:"inputs,omitempty"`
	CLIArgs        []string          `json:"cli_args,omitempty"`
	Env            map[string]string `json:"env,omitempty"`
	Labels         map[string]string `json:"labels,omitempty"`
	TimeoutSeconds float64           `json:"timeout_seconds,omitempty"`
	MaxAttempts    int               `json:"max_attempts,omitempty"`
	MemoryPages    uint32            `json:"memory_pages,omitempty"`
	MemoryBytes    int64             `json:"memory_bytes,omitempty"`
	Preopen        bool              `json:"preopen,omitempty"`
	PropletID      string            `json:"proplet_id,omitempty"`
	PropletIDs     []string          `json:"proplet_ids,omitempty"`
	Selector       map[string]string `json:"selector,omitempty"`
	Suspend        bool              `json:"suspend,omitempty"`
}

// Task is how a task looks over REST.
type Task struct {
	ID             string            `json:"id"`
	Name           string            `json:"name,omitempty"`
	State          string            `json:"state"`
	ImageURL       string            `json:"image_url,omitempty"`
	Digest         string            `json:"digest,omitempty"`
	Function       string            `json:"function,omitempty"`
	Inputs         []float64         `json:"inputs,omitempty"`
	CLIArgs        []string          `json:"cli_args,omitempty"`
	Env            map[string]string `json:"env,omitempty"`
	Labels         map[string]string `json:"labels,omitempty"`
	TimeoutSeconds float64           `json:"timeout_seconds,omitempty"`
	MaxAttempts    int               `json:"max_attempts,omitempty"`
	MemoryPages    uint32            `json:"memory_pages,omitempty"`
	MemoryBytes    int64             `json:"memory_bytes,omitempty"`
	Selector       map[string]string `json:"selector,omitempty"`
	Suspend        bool              `json:"suspend,omitempty"`
	Preopen        bool              `json:"preopen,omitempty"`
	PropletID      string            `json:"proplet_id,omitempty"`
	PropletIDs     []string          `json:"proplet_ids,omitempty"`
	Attempt        int               `json:"attempt"`
	Results        []float64         `json:"results,omitempty"`
	Stdout         string            `json:"stdout,omitempty"`
	Stderr         string            `json:"stderr,omitempty"`
	ExitCode       *int              `json:"exit_code,omitempty"`
	Reason         string            `json:"reason,omitempty"`
	Error          string            `json:"error,omitempty"`
	LastFailure    string            `json:"last_failure,omitempty"`
	CreatedAt      time.Time         `json:"created_at"`
	UpdatedAt      time.Time         `json:"updated_at"`
	ScheduledAt    *time.Time        `json:"scheduled_at,omitempty"`
	StartedAt      *time.Time        `json:"started_at,omitempty"`
	FinishedAt     *time.Time        `json:"finished_at,omitempty"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func toResponse(t orchestration.Task) Task {
	pinned := t.Spec.PropletID
	st := t.Status
	r := Task{
		ID: t.ID, Name: t.Spec.Name, State: string(st.Phase),
		ImageURL: t.Spec.Image, Digest: t.Spec.Digest, Function: t.Spec.Function,
		Inputs: t.Spec.Inputs, CLIArgs: t.Spec.CLIArgs, Env: t.Spec.Env, Labels: t.Spec.Labels,
		TimeoutSeconds: t.Spec.Timeout.Seconds(), MaxAttempts: t.Spec.MaxAttempts,
		MemoryPages: t.Spec.MemoryPages, MemoryBytes: t.Spec.MemoryBytes,
		Selector: t.Spec.Selector, Suspend: t.Spec.Suspend, Preopen: t.Spec.Preopen,
		PropletID: st.PropletID, PropletIDs: t.Spec.PropletIDs, Attempt: st.Attempt,
		Results: st.Results, Stdout: st.Stdout, Stderr: st.Stderr, ExitCode: st.ExitCode,
		Reason: st.Reason, Error: st.Message, LastFailure: st.LastFailure,
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

func checkWasm(b []byte) error {
	if !bytes.HasPrefix(b, wasmMagic) {
		return httpError(http.StatusBadRequest, "not a WebAssembly module", "a module starts with \\0asm and version 1")
	}
	return nil
}

// decodeJSON reads a JSON body into v: 415 for another content type, 413
// past limit, 400 for malformed JSON or unknown fields.
func decodeJSON(c echo.Context, limit int64, v any) error {
	ct := c.Request().Header.Get(echo.HeaderContentType)
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != echo.MIMEApplicationJSON {
		return httpError(http.StatusUnsupportedMediaType, "content type must be application/json", "got "+strconv.Quote(ct))
	}
	body := http.MaxBytesReader(c.Response(), c.Request().Body, limit)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return httpError(http.StatusRequestEntityTooLarge, "request body too large", fmt.Sprintf("limit is %d bytes", limit))
		}
		return httpError(http.StatusBadRequest, "malformed JSON body", err.Error())
	}
	if dec.More() {
		return httpError(http.StatusBadRequest, "malformed JSON body", "trailing data after the JSON object")
	}
	return nil
}

func (a *API) createTask(c echo.Context) error {
	var req TaskRequest
	// Base64 inflates the module by a third.
	if err := decodeJSON(c, a.maxUploadBytes*4/3+64<<10, &req); err != nil {
		return err
	}
	if req.TimeoutSeconds < 0 {
		return httpError(http.StatusBadRequest, "invalid request", "timeout_seconds must not be negative")
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
		return httpError(http.StatusBadRequest, "invalid request", "give file or image_url, not both")
	case len(req.File) > 0:
		if int64(len(req.File)) > a.maxUploadBytes {
			return httpError(http.StatusRequestEntityTooLarge, "module too large", fmt.Sprintf("limit is %d bytes", a.maxUploadBytes))
		}
		if err := checkWasm(req.File); err != nil {
			return err
		}
		d, err := a.blobs.PutBytes(req.File)
		if err != nil {
			return fmt.Errorf("store module: %w", err)
		}
		spec.Image, spec.Digest = "blob://"+d, d
	case req.ImageURL == "":
		// No module yet: it comes with PUT /tasks/{id}/wasm, then start.
		spec.Suspend = true
	}
	t, err := a.engine.Submit(c.Request().Context(), spec)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, toResponse(t))
}

func (a *API) getTask(c echo.Context) error {
	t, err := a.engine.Get(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toResponse(t))
}

// TaskList is one page of GET /tasks.
type TaskList struct {
	Tasks    []Task `json:"tasks"`
	Continue string `json:"continue,omitempty"`
}

func (a *API) listTasks(c echo.Context) error {
	q := c.QueryParams()
	f := orchestration.TaskFilter{PropletID: q.Get("proplet_id"), Continue: q.Get("continue")}
	for _, s := range q["state"] {
		for _, p := range strings.Split(s, ",") {
			ph := orchestration.Phase(p)
			if !ph.Valid() {
				return httpError(http.StatusBadRequest, "invalid state filter", fmt.Sprintf("%q is not a task state", p))
			}
			f.Phases = append(f.Phases, ph)
		}
	}
	for _, l := range q["label"] {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return httpError(http.StatusBadRequest, "invalid label filter", "want label=key=value")
		}
		if f.Labels == nil {
			f.Labels = map[string]string{}
		}
		f.Labels[k] = v
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return httpError(http.StatusBadRequest, "invalid limit", "want a non-negative integer")
		}
		f.Limit = n
	}
	page, err := a.engine.List(c.Request().Context(), f)
	if err != nil {
		return err
	}
	out := TaskList{Tasks: make([]Task, 0, len(page.Tasks)), Continue: page.Continue}
	for _, t := range page.Tasks {
		out.Tasks = append(out.Tasks, toResponse(t))
	}
	return c.JSON(http.StatusOK, out)
}

func (a *API) startTask(c echo.Context) error {
	t, err := a.engine.Start(c.Request().Context(), c.Param("id"))
	if errors.Is(err, orchestration.ErrNoChange) {
		return httpError(http.StatusConflict, "task is not suspended", "it was started already; state "+string(t.Status.Phase))
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toResponse(t))
}

func (a *API) stopTask(c echo.Context) error {
	t, err := a.engine.Stop(c.Request().Context(), c.Param("id"), "stopped over the REST API")
	if errors.Is(err, orchestration.ErrTerminal) {
		return httpError(http.StatusConflict, "task already finished", "state "+string(t.Status.Phase))
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
		return httpError(http.StatusUnsupportedMediaType, "content type must be application/wasm or application/octet-stream", "got "+strconv.Quote(ct))
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
			return httpError(http.StatusRequestEntityTooLarge, "module too large", fmt.Sprintf("limit is %d bytes", a.maxUploadBytes))
		}
		return httpError(http.StatusBadRequest, "cannot read body", err.Error())
	}
	if err := checkWasm(b); err != nil {
		return err
	}
	d, err := a.blobs.PutBytes(b)
	if err != nil {
		return fmt.Errorf("store module: %w", err)
	}
	t, err := a.engine.EditSuspended(ctx, id, func(s *orchestration.TaskSpec) error {
		s.Image, s.Digest = "blob://"+d, d
		return nil
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toResponse(t))
}

// Proplet is how a proplet looks over REST.
type Proplet struct {
	ID          string            `json:"id"`
	Alive       bool              `json:"alive"`
	Labels      map[string]string `json:"labels,omitempty"`
	Slots       int               `json:"slots"`
	MemoryBytes int64             `json:"memory_bytes,omitempty"`
	Runtime     string            `json:"runtime,omitempty"`
	Version     string            `json:"version,omitempty"`
	LastSeen    *time.Time        `json:"last_seen,omitempty"`
	Running     []string          `json:"running"`
}

// PropletList is the body of GET /proplets.
type PropletList struct {
	Proplets []Proplet `json:"proplets"`
}

func toProplet(p orchestration.Proplet) Proplet {
	r := Proplet{
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
	out := PropletList{Proplets: make([]Proplet, 0, len(ps))}
	for _, p := range ps {
		out.Proplets = append(out.Proplets, toProplet(p))
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
