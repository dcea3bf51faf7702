package rest

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"time"

	"github.com/labstack/echo/v4"

	api "github.com/absmach/propeller/api/rest"
)

const requestIDKey = "requestId"

// validRequestID accepts what is safe to echo into a header, a log line
// and a problem body: 1 to 128 of [A-Za-z0-9._-].
func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, r := range id {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
		default:
			return false
		}
	}
	return true
}

func newRequestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// requestID takes the client's X-Request-Id, or makes one up when it is
// missing or unfit, and answers with it.
func requestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Request().Header.Get(api.HeaderRequestID)
		if !validRequestID(id) {
			id = newRequestID()
		}
		c.Set(requestIDKey, id)
		c.Response().Header().Set(api.HeaderRequestID, id)
		return next(c)
	}
}

func requestIDOf(c echo.Context) string {
	id, _ := c.Get(requestIDKey).(string)
	return id
}

// probes are logged at debug: they come every few seconds.
var probes = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}

// accessLog writes one line per request once it is answered; an error is
// answered here (c.Error), so the line has the status the client got.
func accessLog(log *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			if err := next(c); err != nil {
				c.Error(err)
			}
			req, resp := c.Request(), c.Response()
			level := slog.LevelInfo
			switch {
			case probes[req.URL.Path]:
				level = slog.LevelDebug
			case resp.Status >= 500:
				level = slog.LevelError
			}
			log.LogAttrs(req.Context(), level, "http request",
				slog.String("method", req.Method), slog.String("path", req.URL.Path),
				slog.Int("status", resp.Status), slog.Int64("bytes", resp.Size),
				slog.Duration("duration", time.Since(start)), slog.String("requestId", requestIDOf(c)),
				slog.String("remote", req.RemoteAddr))
			return nil
		}
	}
}
