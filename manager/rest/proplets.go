package rest

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	api "github.com/absmach/propeller/api/rest"
	"github.com/absmach/propeller/orchestration"
)

func toProplet(p orchestration.Proplet) api.Proplet {
	r := api.Proplet{
		ID: p.ID, Alive: p.Alive, Labels: p.Labels, Slots: p.Slots, MemoryBytes: p.MemoryBytes,
		Runtime: p.Runtime, Version: p.Version, LastSeen: timePtr(p.LastSeen), Running: p.Running,
	}
	if r.Running == nil {
		r.Running = []string{}
	}
	return r
}

// listProplets pages by id: the engine holds every proplet in memory.
func (s *server) listProplets(c echo.Context) error {
	ps, err := s.engine.Proplets(c.Request().Context())
	if err != nil {
		return err
	}
	page, next, err := pageOf(c, ps, func(p orchestration.Proplet) string { return p.ID })
	if err != nil {
		return err
	}
	out := api.PropletList{Items: make([]api.Proplet, 0, len(page)), Continue: next}
	for _, p := range page {
		out.Items = append(out.Items, toProplet(p))
	}
	return c.JSON(http.StatusOK, out)
}

func (s *server) getProplet(c echo.Context) error {
	p, err := s.engine.Proplet(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toProplet(p))
}

func (s *server) deleteProplet(c echo.Context) error {
	if err := s.engine.RemoveProplet(c.Request().Context(), c.Param("id")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *server) credentialsEnabled() error {
	if s.creds == nil {
		return api.NewProblem(api.CodeNotImplemented,
			"per-proplet credentials are not available: the manager uses an external MQTT broker, manage proplet credentials there")
	}
	return nil
}

// credentialError names the proplet: a store's not-found is about the
// credential, not the proplet, which need not have joined yet.
func credentialError(id string, err error) error {
	if errors.Is(err, orchestration.ErrNotFound) {
		return api.Problemf(api.CodeNotFound, "proplet %q has no credential", id)
	}
	return err
}

func (s *server) issueCredential(c echo.Context) error {
	if err := s.credentialsEnabled(); err != nil {
		return err
	}
	id := c.Param("id")
	cred, err := s.creds.Issue(id)
	if err != nil {
		return credentialError(id, err)
	}
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return c.JSON(http.StatusCreated, cred)
}

func (s *server) getCredential(c echo.Context) error {
	if err := s.credentialsEnabled(); err != nil {
		return err
	}
	id := c.Param("id")
	cred, err := s.creds.Get(id)
	if err != nil {
		return credentialError(id, err)
	}
	return c.JSON(http.StatusOK, cred)
}

func (s *server) revokeCredential(c echo.Context) error {
	if err := s.credentialsEnabled(); err != nil {
		return err
	}
	id := c.Param("id")
	if err := s.creds.Revoke(id); err != nil {
		return credentialError(id, err)
	}
	return c.NoContent(http.StatusNoContent)
}
