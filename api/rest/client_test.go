package rest_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/rest"
)

func TestNewClientRefusesBadURLs(t *testing.T) {
	for _, u := range []string{"", "127.0.0.1:7070", "ftp://host", "http://", "::"} {
		_, err := rest.NewClient(u, "t")
		require.Error(t, err, u)
	}
}

// TestErrorsAreProblems: a problem body comes back as itself; anything
// else (a proxy's page) as a Problem with a code guessed from the status.
func TestErrorsAreProblems(t *testing.T) {
	for _, tc := range []struct {
		name, ctype, body string
		status            int
		code, detail      string
	}{
		{"problem", rest.ProblemContentType, `{"type":"x","title":"Conflict","status":409,"code":"conflict","detail":"task \"a\" already finished","requestId":"r1"}`, 409, rest.CodeConflict, `task "a" already finished`},
		{"html 502", "text/html", "<h1>Bad Gateway</h1>", 502, rest.CodeBadGateway, "<h1>Bad Gateway</h1>"},
		{"empty 404", "", "", 404, rest.CodeNotFound, "Not Found"},
		{"json without code", "application/json", `{"error":"old"}`, 400, rest.CodeInvalidRequest, `{"error":"old"}`},
		{"empty 500", "", "", 500, rest.CodeInternal, "Internal Server Error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				if tc.ctype != "" {
					w.Header().Set("Content-Type", tc.ctype)
				}
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			c, err := rest.NewClient(srv.URL, "t")
			require.NoError(t, err)
			_, err = c.GetTask(context.Background(), "a")
			p, ok := rest.AsProblem(err)
			require.True(t, ok, "%v", err)
			require.Equal(t, tc.status, p.Status)
			require.Equal(t, tc.code, p.Code)
			require.Equal(t, tc.detail, p.Detail)
			require.Equal(t, tc.code == rest.CodeNotFound, rest.IsNotFound(err))
			require.Equal(t, tc.code == rest.CodeConflict, rest.IsConflict(err))
		})
	}
}

// TestRequests: what the client sends for a filter, the call options,
// and that the iterators follow continue tokens.
func TestRequests(t *testing.T) {
	var got []*http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r)
		w.Header().Set("X-Request-Id", "from-server")
		switch r.URL.Query().Get("continue") {
		case "":
			_ = json.NewEncoder(w).Encode(rest.PropletList{Items: []rest.Proplet{{ID: "a"}}, Continue: "next"})
		default:
			_ = json.NewEncoder(w).Encode(rest.PropletList{Items: []rest.Proplet{{ID: "b"}}})
		}
	}))
	defer srv.Close()
	c, err := rest.NewClient(srv.URL+"/", "tok")
	require.NoError(t, err)
	ctx := context.Background()

	_, err = c.ListTasks(ctx, rest.TaskFilter{Phases: []string{"Running", "Failed"}, PropletID: "p1",
		Labels: map[string]string{"k": "v"}, Name: "app", Page: rest.Page{Limit: 5, Continue: "c1"}})
	require.NoError(t, err)
	require.Equal(t, "/v1/tasks", got[0].URL.Path)
	require.Equal(t, url.Values{"phase": {"Running,Failed"}, "propletId": {"p1"}, "label": {"k=v"}, "name": {"app"},
		"limit": {"5"}, "continue": {"c1"}}, got[0].URL.Query())
	require.Equal(t, "Bearer tok", got[0].Header.Get("Authorization"))

	var h http.Header
	_, err = c.CreateTask(ctx, rest.TaskRequest{Name: "x", Suspend: true},
		rest.WithIdempotencyKey("k1"), rest.WithRequestID("r1"), rest.WithResponseHeader(&h))
	require.NoError(t, err)
	require.Equal(t, "k1", got[1].Header.Get(rest.HeaderIdempotencyKey))
	require.Equal(t, "r1", got[1].Header.Get(rest.HeaderRequestID))
	require.Equal(t, "application/json", got[1].Header.Get("Content-Type"))
	require.Equal(t, "from-server", h.Get(rest.HeaderRequestID))

	var ids []string
	for p, err := range c.Proplets(ctx) {
		require.NoError(t, err)
		ids = append(ids, p.ID)
	}
	require.Equal(t, []string{"a", "b"}, ids)
	require.Equal(t, "next", got[3].URL.Query().Get("continue"))

	_, err = c.GetTask(ctx, "a/b c")
	require.NoError(t, err)
	require.Equal(t, "/v1/tasks/a%2Fb%20c", got[4].URL.EscapedPath())
}
