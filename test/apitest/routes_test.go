package apitest_test

import (
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	server "github.com/absmach/propeller/manager/rest"
	"github.com/absmach/propeller/test/apitest"
)

// echoParam is an echo path parameter (:id); an escaped colon (\:) is a
// literal, as in /v1/tasks\:batch.
var echoParam = regexp.MustCompile(`(^|[^\\]):([A-Za-z0-9_]+)`)

// TestRoutesMatchServer: every route the server registers is an operation
// of the document, and every operation is a route the server registers.
func TestRoutesMatchServer(t *testing.T) {
	// Every optional part on, so every route is registered; nothing is
	// called.
	h, err := server.New(server.Config{Auth: noAuth{}, FL: &server.FL{}, Metrics: http.NotFoundHandler()})
	require.NoError(t, err)
	e, ok := h.(*echo.Echo)
	require.True(t, ok, "manager/rest serves with echo")
	var routes []string
	for _, r := range e.Routes() {
		if r.Method == echo.RouteNotFound {
			continue
		}
		p := echoParam.ReplaceAllString(r.Path, "$1{$2}")
		routes = append(routes, r.Method+" "+strings.ReplaceAll(p, `\:`, ":"))
	}

	doc, err := apitest.Document()
	require.NoError(t, err)
	var documented []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented = append(documented, method+" "+path)
		}
	}
	slices.Sort(routes)
	slices.Sort(documented)
	require.Equal(t, documented, slices.Compact(routes))
}

type noAuth struct{}

func (noAuth) Authenticate(*http.Request) error { return nil }
