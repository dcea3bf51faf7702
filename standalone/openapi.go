package standalone

import (
	"fmt"

	"sigs.k8s.io/yaml"

	"github.com/absmach/propeller/api/rest"
)

func openAPIJSON() ([]byte, error) {
	b, err := yaml.YAMLToJSON(rest.OpenAPIYAML)
	if err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}
	return b, nil
}
