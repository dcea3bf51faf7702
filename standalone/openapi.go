package standalone

import (
	_ "embed"
	"fmt"

	"sigs.k8s.io/yaml"
)

// openAPIYAML is the API contract; docs/openapi.yaml is a copy that a test
// keeps identical.
//
//go:embed openapi.yaml
var openAPIYAML []byte

func openAPIJSON() ([]byte, error) {
	b, err := yaml.YAMLToJSON(openAPIYAML)
	if err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}
	return b, nil
}
