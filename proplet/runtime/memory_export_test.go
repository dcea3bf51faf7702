package runtime

// LiveMappings is the number of linear memories mapped and not yet
// unmapped, for tests that check nothing leaks.
func LiveMappings() int64 { return liveMappings.Load() }

// MmapBacked reports whether this platform maps linear memories.
const MmapBacked = mmapBacked
