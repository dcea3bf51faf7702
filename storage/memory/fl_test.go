package memory_test

import (
	"testing"

	"github.com/absmach/propeller/orchestration/fl"
	"github.com/absmach/propeller/orchestration/fl/fltest"
	"github.com/absmach/propeller/storage/memory"
)

func TestFLStore(t *testing.T) {
	fltest.TestStore(t, func(*testing.T) fl.Store { return memory.NewFLStore() })
}
