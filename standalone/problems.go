package standalone

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/absmach/propeller/api/rest"
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

// cleanDetail is an engine error's message without the sentinel it wraps
// (": invalid"), or "" when it names a store's internals.
func cleanDetail(err error, sentinel error) string {
	msg := strings.TrimSuffix(err.Error(), ": "+sentinel.Error())
	if strings.Contains(msg, "bolt:") || strings.Contains(msg, "memory:") {
		return ""
	}
	return msg
}

// toProblem maps an error to the problem the client sees. Engine errors
// map here, once: a user's mistake is a 4xx, never a 500, and a detail
// names the caller's input, never a store's internals.
func toProblem(err error, c echo.Context) *rest.Problem {
	if p, ok := rest.AsProblem(err); ok {
		return p
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		switch he.Code {
		case http.StatusNotFound:
			return rest.Problemf(rest.CodeNotFound, "no route %s %s", c.Request().Method, c.Request().URL.Path)
		case http.StatusMethodNotAllowed:
			return rest.Problemf(rest.CodeMethodNotAllowed, "%s is not allowed on %s", c.Request().Method, c.Request().URL.Path)
		case http.StatusRequestEntityTooLarge:
			return rest.NewProblem(rest.CodePayloadTooLarge, "request body too large")
		}
		p := rest.NewProblem(rest.CodeInternal, fmt.Sprint(he.Message))
		p.Status = he.Code
		return p
	}
	kind, id := resourceKind(c.Path()), c.Param("id")
	if id == "" {
		id = c.Param("digest")
	}
	switch {
	case errors.Is(err, orchestration.ErrNotFound):
		if id == "" {
			return rest.NewProblem(rest.CodeNotFound, kind+" not found")
		}
		return rest.Problemf(rest.CodeNotFound, "%s %q not found", kind, id)
	case errors.Is(err, orchestration.ErrExists):
		return rest.Problemf(rest.CodeAlreadyExists, "%s %q already exists", kind, id)
	case errors.Is(err, orchestration.ErrInvalid):
		d := cleanDetail(err, orchestration.ErrInvalid)
		if d == "" {
			d = "invalid " + kind
		}
		return rest.NewProblem(rest.CodeInvalidRequest, d)
	case errors.Is(err, fl.ErrModelUnavailable):
		return rest.NewProblem(rest.CodeBadGateway, cleanDetail(err, fl.ErrModelUnavailable)+": the model registry is unavailable, try again later")
	case errors.Is(err, orchestration.ErrTerminal):
		return rest.Problemf(rest.CodeConflict, "%s %q already finished", kind, id)
	case errors.Is(err, orchestration.ErrConflict):
		d := cleanDetail(err, orchestration.ErrConflict)
		if d == "" {
			d = fmt.Sprintf("%s %q changed meanwhile; try again", kind, id)
		}
		return rest.NewProblem(rest.CodeConflict, d)
	}
	c.Logger().Error(err)
	return rest.NewProblem(rest.CodeInternal, "internal error; the manager's log has the cause")
}

// errorHandler answers every error as application/problem+json.
func errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	p := toProblem(err, c)
	p.Instance = c.Request().URL.Path
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(p.Status)
		return
	}
	c.Response().Header().Set(echo.HeaderContentType, rest.ProblemContentType)
	c.Response().WriteHeader(p.Status)
	_ = json.NewEncoder(c.Response()).Encode(p)
}
