package rest

import (
	"io"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	api "github.com/absmach/propeller/api/rest"
)

// Backuper writes a consistent copy of the manager's database while it
// keeps serving (storage/bolt's Store). It is safe for concurrent use.
type Backuper interface {
	Backup(w io.Writer) (int64, error)
}

// backup streams the database: the state at the start of one read
// transaction, so writers are not held up. Once streaming began, an error
// can only cut the body short; the client sees a short, invalid file.
func (s *server) backup(c echo.Context) error {
	if s.backuper == nil {
		return api.NewProblem(api.CodeNotImplemented, "this manager keeps its state elsewhere (the operator's is in Kubernetes): back that up instead")
	}
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, echo.MIMEOctetStream)
	h.Set(echo.HeaderContentDisposition, `attachment; filename="propeller-`+time.Now().UTC().Format("20060102T150405Z")+`.db"`)
	h.Set("Cache-Control", "no-store")
	c.Response().WriteHeader(http.StatusOK)
	n, err := s.backuper.Backup(c.Response())
	if err != nil {
		s.log.Error("backup cut short", "bytes", n, "err", err, "requestId", h.Get(api.HeaderRequestID))
	}
	return nil
}
