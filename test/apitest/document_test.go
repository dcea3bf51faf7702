package apitest_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/stretchr/testify/require"

	"github.com/absmach/propeller/api/rest"
	"github.com/absmach/propeller/test/apitest"
)

// public are the operations anyone may call: probes, metrics and the
// document itself.
var public = []string{"getHealth", "getReadiness", "getMetrics", "getOpenAPI"}

// no404 are the operations on a path with a parameter that never answer
// 404, and why.
var no404 = map[string]string{
	"issuePropletCredential": "a proplet is issued its secret before it joins",
}

func TestDocumentIsValid(t *testing.T) {
	doc, err := apitest.Load(context.Background(), rest.OpenAPIYAML)
	require.NoError(t, err)
	require.Equal(t, "3.1.0", doc.OpenAPI)
	require.Contains(t, doc.Components.SecuritySchemes, "bearer")
	require.Equal(t, openapi3.SecurityRequirements{{"bearer": {}}}, doc.Security, "bearer is the default")
}

// TestEveryOperationIsComplete holds each operation to what generated
// clients and readers need: a unique operationId, a summary, a tag, and
// every status it can answer, each error as a problem.
func TestEveryOperationIsComplete(t *testing.T) {
	doc, err := apitest.Document()
	require.NoError(t, err)
	ids := map[string]string{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			where := method + " " + path
			t.Run(where, func(t *testing.T) {
				require.NotEmpty(t, op.OperationID, "operationId")
				require.NotContains(t, ids, op.OperationID, "operationId also used by %s", ids[op.OperationID])
				ids[op.OperationID] = where
				require.NotEmpty(t, op.Summary, "summary")
				require.NotEmpty(t, op.Tags, "tags")

				statuses := statusesOf(op)
				has := func(codes ...string) {
					t.Helper()
					for _, c := range codes {
						require.Contains(t, statuses, c, "%s declares no %s", op.OperationID, c)
					}
				}
				if slices.Contains(public, op.OperationID) {
					require.NotNil(t, op.Security, "a public operation says security: []")
					require.Empty(t, *op.Security)
					require.NotContains(t, statuses, "401")
				} else {
					require.Nil(t, op.Security, "%s uses the default bearer security", op.OperationID)
					has("401", "500")
				}
				if _, ok := no404[op.OperationID]; strings.Contains(path, "{") && !ok {
					has("404")
				}
				if op.RequestBody != nil {
					has("400", "413", "415")
				}
				if hasParam(item, op, openapi3.ParameterInHeader, "Idempotency-Key") {
					has("422")
				}
				if hasParam(item, op, openapi3.ParameterInQuery, "limit") {
					has("400")
					require.True(t, hasParam(item, op, openapi3.ParameterInQuery, "continue"), "a list pages with limit and continue")
				}
				if method == http.MethodPost && op.RequestBody != nil && hasParam(item, op, openapi3.ParameterInHeader, "Idempotency-Key") {
					has("201")
				}
				require.True(t, hasParam(item, op, openapi3.ParameterInHeader, "X-Request-Id"), "X-Request-Id is accepted")

				for _, code := range statuses {
					resp := op.Responses.Value(code).Value
					require.Contains(t, resp.Headers, "X-Request-Id", "answer %s carries X-Request-Id", code)
					if code[0] == '4' || code[0] == '5' {
						require.Len(t, resp.Content, 1, "answer %s", code)
						mt := resp.Content.Get(rest.ProblemContentType)
						require.NotNil(t, mt, "answer %s is a problem", code)
						require.Equal(t, "#/components/schemas/Problem", mt.Schema.Ref, "answer %s", code)
					}
				}
			})
		}
	}
}

// TestProblemCodes: the document's code enum is the package's list, so a
// new code cannot be answered before it is documented.
func TestProblemCodes(t *testing.T) {
	doc, err := apitest.Document()
	require.NoError(t, err)
	var enum []string
	for _, v := range doc.Components.Schemas["Problem"].Value.Properties["code"].Value.Enum {
		enum = append(enum, v.(string))
	}
	require.ElementsMatch(t, rest.Codes(), enum)
}

func TestGenericAnswersAreDocumented(t *testing.T) {
	doc, err := apitest.Document()
	require.NoError(t, err)
	nf := doc.Components.Responses["NotFound"]
	require.NotNil(t, nf)
	na := doc.Components.Responses["MethodNotAllowed"]
	require.NotNil(t, na)
	require.Contains(t, na.Value.Headers, "Allow")
	require.True(t, na.Value.Headers["Allow"].Value.Required)
}

func statusesOf(op *openapi3.Operation) []string {
	var out []string
	for code := range op.Responses.Map() {
		out = append(out, code)
	}
	slices.Sort(out)
	return out
}

func hasParam(item *openapi3.PathItem, op *openapi3.Operation, in, name string) bool {
	return op.Parameters.GetByInAndName(in, name) != nil || item.Parameters.GetByInAndName(in, name) != nil
}
