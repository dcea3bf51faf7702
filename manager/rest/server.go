// Package rest serves Propeller's REST API v1 (api/rest) over the manager
// core: the engine, the FL coordinator, the blob store and, where the
// broker is embedded, per-proplet credentials. Both managers mount the
// same handler; each brings its own Authenticator (the standalone manager
// a bearer token).
package rest

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	api "github.com/absmach/propeller/api/rest"
	"github.com/absmach/propeller/orchestration"
)

// Engine is what the API needs from the orchestration engine.
type Engine interface {
	Submit(ctx context.Context, spec orchestration.TaskSpec) (orchestration.Task, error)
	SubmitBatch(ctx context.Context, specs []orchestration.TaskSpec, idem orchestration.Idempotency) ([]orchestration.Task, bool, error)
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

// Authenticator decides whether a request may use the API. It sees every
// request to a /v1 route except the OpenAPI document; an error refuses it:
// a *api.Problem is answered as it is, any other error as 401
// unauthorized with the error's text as the detail.
type Authenticator interface {
	Authenticate(r *http.Request) error
}

// Credentials issues, shows and revokes per-proplet MQTT secrets. An
// unknown proplet is orchestration.ErrNotFound, a bad id
// orchestration.ErrInvalid.
type Credentials interface {
	Issue(id string) (api.IssuedCredential, error)
	Get(id string) (api.PropletCredential, error)
	Revoke(id string) error
}

// Config configures New.
type Config struct {
	Engine Engine
	Blobs  BlobStore
	// Auth guards every /v1 route but the OpenAPI document; required.
	Auth Authenticator
	// MaxUploadBytes caps a module (and a model) upload; default 32 MiB.
	MaxUploadBytes int64
	// Ready reports whether the manager can serve (broker connected).
	Ready func() error
	// Metrics serves /metrics; nil disables it.
	Metrics http.Handler
	// FL serves the federated-learning routes; nil disables them.
	FL *FL
	// Credentials manages per-proplet MQTT secrets; nil (an external
	// broker) answers the credential routes with 501.
	Credentials Credentials
	// Backup streams a copy of the database (GET /v1/backup); nil
	// answers 501.
	Backup Backuper
	// CORSOrigins lists the origins a browser may call the API from;
	// empty disables CORS.
	CORSOrigins []string
	// Logger receives the access log, one line per request.
	Logger *slog.Logger
}

// server holds what the handlers share.
type server struct {
	engine         Engine
	blobs          BlobStore
	maxUploadBytes int64
	ready          func() error
	creds          Credentials
	backuper       Backuper
	log            *slog.Logger
}

// New returns the API's handler with every route.
func New(cfg Config) (http.Handler, error) {
	if cfg.Auth == nil {
		return nil, errors.New("rest: Config.Auth is required")
	}
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
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &server{engine: cfg.Engine, blobs: cfg.Blobs, maxUploadBytes: cfg.MaxUploadBytes,
		ready: cfg.Ready, creds: cfg.Credentials, backuper: cfg.Backup, log: cfg.Logger}

	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = s.errorHandler
	e.Use(requestID, accessLog(cfg.Logger))
	if len(cfg.CORSOrigins) > 0 {
		e.Use(middleware.CORSWithConfig(middleware.CORSConfig{
			AllowOrigins:  cfg.CORSOrigins,
			AllowHeaders:  []string{echo.HeaderAuthorization, echo.HeaderContentType, api.HeaderIdempotencyKey, api.HeaderRequestID},
			ExposeHeaders: []string{echo.HeaderLocation, api.HeaderRequestID, api.HeaderIdempotentReplay, api.HeaderDockerContentDigest},
			MaxAge:        600,
		}))
	}

	e.GET("/healthz", func(c echo.Context) error { return c.JSON(http.StatusOK, map[string]string{"status": "ok"}) })
	e.GET("/readyz", s.readyz)
	if cfg.Metrics != nil {
		e.GET("/metrics", echo.WrapHandler(cfg.Metrics))
	}
	e.GET("/v1/openapi.json", func(c echo.Context) error { return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, spec) })

	// Authentication is per route, not group middleware, and unknown
	// routes get echo's own 404 (mapped in toProblem), not a catch-all
	// route: either catch-all makes echo answer a wrong method with 404,
	// and a wrong method must be 405 with Allow.
	auth := authenticate(cfg.Auth)
	v1 := e.Group("/v1")
	v1.POST("/tasks", s.createTask, auth)
	// Echo reads ':' as the start of a path parameter; "\\:" is a literal
	// colon (the AIP-136 custom-method style of the contract).
	v1.POST("/tasks\\:batch", s.createTaskBatch, auth)
	v1.GET("/tasks", s.listTasks, auth)
	v1.GET("/tasks/:id", s.getTask, auth)
	v1.DELETE("/tasks/:id", s.deleteTask, auth)
	v1.POST("/tasks/:id/start", s.startTask, auth)
	v1.POST("/tasks/:id/stop", s.stopTask, auth)
	v1.PUT("/tasks/:id/wasm", s.uploadWasm, auth)
	v1.GET("/proplets", s.listProplets, auth)
	v1.GET("/proplets/:id", s.getProplet, auth)
	v1.DELETE("/proplets/:id", s.deleteProplet, auth)
	v1.POST("/proplets/:id/credentials", s.issueCredential, auth)
	v1.GET("/proplets/:id/credentials", s.getCredential, auth)
	v1.DELETE("/proplets/:id/credentials", s.revokeCredential, auth)
	v1.GET("/backup", s.backup, auth)
	if cfg.FL != nil {
		f := &flRoutes{FL: *cfg.FL, maxUpload: cfg.MaxUploadBytes}
		v1.POST("/federated-jobs", f.create, auth)
		v1.GET("/federated-jobs", f.list, auth)
		v1.GET("/federated-jobs/:id", f.get, auth)
		v1.POST("/federated-jobs/:id/stop", f.stop, auth)
		v1.GET("/federated-jobs/:id/checkpoints", f.checkpoints, auth)
		v1.GET("/models/:digest", f.model, auth)
	}
	return e, nil
}

func authenticate(a Authenticator) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if err := a.Authenticate(c.Request()); err != nil {
				if _, ok := api.AsProblem(err); ok {
					return err
				}
				return api.NewProblem(api.CodeUnauthorized, err.Error())
			}
			return next(c)
		}
	}
}

func (s *server) readyz(c echo.Context) error {
	if err := s.ready(); err != nil {
		return api.NewProblem(api.CodeUnavailable, "not ready: "+err.Error())
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}
