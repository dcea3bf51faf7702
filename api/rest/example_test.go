package rest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/absmach/propeller/api/rest"
)

// manager stands in for `propeller manager standalone` so the example
// runs by itself: it knows one finished task, "t1".
func manager() *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/tasks", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "/v1/tasks/t1")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(rest.Task{ID: "t1", Name: "add", Phase: rest.PhasePending})
	})
	mux.HandleFunc("GET /v1/tasks/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") != "t1" {
			w.Header().Set("Content-Type", rest.ProblemContentType)
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(rest.Problemf(rest.CodeNotFound, "task %q not found", r.PathValue("id")))
			return
		}
		_ = json.NewEncoder(w).Encode(rest.Task{ID: "t1", Name: "add", Phase: rest.PhaseSucceeded, Results: []float64{42}})
	})
	return httptest.NewServer(mux)
}

func Example() {
	srv := manager()
	defer srv.Close()
	ctx := context.Background()

	// The token is in the manager's <data-dir>/api-token.
	c, err := rest.NewClient(srv.URL, "token")
	if err != nil {
		log.Fatal(err)
	}
	t, err := c.CreateTask(ctx, rest.TaskRequest{
		Name:     "add",
		ImageURL: "oci://registry.example/add:1",
		Function: "add",
		Inputs:   []float64{40, 2},
	}, rest.WithIdempotencyKey("add-40-2"))
	if err != nil {
		log.Fatal(err)
	}
	t, err = c.WaitTask(ctx, t.ID, 100*time.Millisecond)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(t.Name, t.Phase, t.Results)

	_, err = c.GetTask(ctx, "nope")
	if rest.IsNotFound(err) {
		p, _ := rest.AsProblem(err)
		fmt.Println(p.Status, p.Code+":", p.Detail)
	}
	// Output:
	// add Succeeded [42]
	// 404 not-found: task "nope" not found
}
