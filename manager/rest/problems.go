package rest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	api "github.com/absmach/propeller/api/rest"
	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/orchestration/fl"
)

// resourceKinds names what a route's :id is, for a detail such as
// `task "app" not found`.
var resourceKinds = []struct{ prefix, kind string }{
	{"/v1/tasks", "task"},
	{"/v1/proplets", "proplet"},
	{"/v1/federated-jobs", "federated job"},
	{"/v1/models", "model"},
}

func resourceKind(route string) string {
	for _, k := range resourceKinds {
		if strings.HasPrefix(route, k.prefix) {
			return k.kind
		}
	}
	return "resource"
}

// storePrefixes open the messages of store errors; a detail never shows
// them.
var storePrefixes = []string{"bolt:", "memory:", "create job:", "store "}

// cleanDetail is an error's message without the sentinel it wraps
// (": invalid"), or "" when it names a store's internals.
func cleanDetail(err error, sentinel error) string {
	msg := strings.TrimSuffix(err.Error(), ": "+sentinel.Error())
	for _, p := range storePrefixes {
		if strings.Contains(msg, p) {
			return ""
		}
	}
	return msg
}

// toProblem maps an error to the problem the client sees. Engine errors
// map here, once: a user's mistake is a 4xx, never a 500, and a detail
// names the caller's input, never a store's internals.
func (s *server) toProblem(err error, c echo.Context) *api.Problem {
	if p, ok := api.AsProblem(err); ok {
		return p
	}
	req := c.Request()
	var he *echo.HTTPError
	if errors.As(err, &he) {
		switch he.Code {
		case http.StatusNotFound:
			return api.Problemf(api.CodeNotFound, "no route %s %s", req.Method, req.URL.Path)
		case http.StatusMethodNotAllowed:
			return api.Problemf(api.CodeMethodNotAllowed, "%s is not allowed on %s; allowed: %s",
				req.Method, req.URL.Path, c.Response().Header().Get(echo.HeaderAllow))
		case http.StatusRequestEntityTooLarge:
			return api.NewProblem(api.CodePayloadTooLarge, "request body too large")
		case http.StatusUnsupportedMediaType:
			return api.NewProblem(api.CodeUnsupportedMediaType, fmt.Sprint(he.Message))
		case http.StatusBadRequest:
			return api.NewProblem(api.CodeInvalidRequest, fmt.Sprint(he.Message))
		}
	}
	kind, id := resourceKind(c.Path()), c.Param("id")
	if id == "" {
		id = c.Param("digest")
	}
	switch {
	case errors.Is(err, orchestration.ErrNotFound):
		if id == "" {
			return api.NewProblem(api.CodeNotFound, kind+" not found")
		}
		return api.Problemf(api.CodeNotFound, "%s %q not found", kind, id)
	case errors.Is(err, orchestration.ErrExists):
		return api.Problemf(api.CodeAlreadyExists, "%s %q already exists", kind, id)
	case errors.Is(err, orchestration.ErrIdempotencyMismatch):
		d := cleanDetail(err, orchestration.ErrIdempotencyMismatch)
		if d == "" {
			d = "the Idempotency-Key was used for a different request; use a new key"
		}
		return api.NewProblem(api.CodeIdempotencyKeyReused, d)
	case errors.Is(err, orchestration.ErrInvalid):
		d := cleanDetail(err, orchestration.ErrInvalid)
		if d == "" {
			d = "invalid " + kind
		}
		return api.NewProblem(api.CodeInvalidRequest, d)
	case errors.Is(err, fl.ErrModelUnavailable):
		d := cleanDetail(err, fl.ErrModelUnavailable)
		if d == "" {
			d = "the initial model"
		}
		return api.NewProblem(api.CodeBadGateway, d+": the model registry is unavailable, try again later")
	case errors.Is(err, orchestration.ErrTerminal):
		return api.Problemf(api.CodeConflict, "%s %q already finished", kind, id)
	case errors.Is(err, orchestration.ErrConflict):
		d := cleanDetail(err, orchestration.ErrConflict)
		if d == "" {
			d = fmt.Sprintf("%s %q changed meanwhile; try again", kind, id)
		}
		return api.NewProblem(api.CodeConflict, d)
	case errors.Is(err, errors.ErrUnsupported):
		return api.Problemf(api.CodeNotImplemented, "%s %s is not supported by this manager", req.Method, req.URL.Path)
	}
	// Not the caller's doing: the cause goes to the log, under the
	// request id the answer carries, and not to the caller.
	s.log.Error("request failed", "method", req.Method, "path", req.URL.Path, "requestId", requestIDOf(c), "err", err)
	return api.NewProblem(api.CodeInternal, "internal error; the manager's log has the cause under this requestId")
}

// errorHandler answers every error as application/problem+json.
func (s *server) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	p := *s.toProblem(err, c)
	p.Instance = c.Request().URL.Path
	p.RequestID = requestIDOf(c)
	h := c.Response().Header()
	if p.Status == http.StatusUnauthorized {
		h.Set(echo.HeaderWWWAuthenticate, `Bearer realm="propeller"`)
	}
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(p.Status)
		return
	}
	b, mErr := json.Marshal(p)
	if mErr != nil {
		b = []byte(`{"code":"internal"}`)
	}
	_ = c.Blob(p.Status, api.ProblemContentType, append(b, '\n'))
}
