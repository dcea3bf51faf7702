// Package e2e runs the real binary: a standalone manager and proplets as
// separate processes, over the embedded broker or Mosquitto, driven through
// the REST API.
package e2e

import (
	"testing"

	"github.com/absmach/propeller/test/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }
