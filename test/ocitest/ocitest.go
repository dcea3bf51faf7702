// Package ocitest serves a real OCI distribution registry on loopback for
// tests: go-containerregistry's in-process registry, speaking the same
// protocol as Harbor, GHCR or a cluster registry.
package ocitest

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
)

// Handler is a fresh, empty registry that logs nothing.
func Handler() http.Handler {
	return registry.New(registry.Logger(log.New(io.Discard, "", 0)))
}

// Serve serves h (a fresh Handler when nil) on loopback until the test
// ends and returns its host:port.
func Serve(t testing.TB, h http.Handler) string {
	t.Helper()
	if h == nil {
		h = Handler()
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// WithBasicAuth lets only user:password through to h; any other request
// gets 401 with a Basic challenge, as a registry with htpasswd answers.
func WithBasicAuth(h http.Handler, user, password string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != password {
			w.Header().Set("WWW-Authenticate", `Basic realm="propeller-test"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
			return
		}
		h.ServeHTTP(w, r)
	})
}
