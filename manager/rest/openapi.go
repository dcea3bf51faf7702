package rest

import (
	"fmt"

	"sigs.k8s.io/yaml"

	api "github.com/absmach/propeller/api/rest"
)

func openAPIJSON() ([]byte, error) {
	b, err := yaml.YAMLToJSON(api.OpenAPIYAML)
	if err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}
	return b, nil
}
