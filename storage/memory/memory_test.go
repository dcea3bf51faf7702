package memory_test

import (
	"testing"

	"github.com/absmach/propeller/orchestration"
	"github.com/absmach/propeller/storage/memory"
	"github.com/absmach/propeller/storage/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) orchestration.Store { return memory.New() })
}
