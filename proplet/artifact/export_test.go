package artifact

// OnFlightJoin makes f call hook each time a fetch joins a download of the
// same URI already in progress, so a test can release the server only once
// every caller is waiting on the one request.
func (f *Fetcher) OnFlightJoin(hook func(key string)) {
	f.flights.mu.Lock()
	f.flights.joined = hook
	f.flights.mu.Unlock()
}

// HTTPIndexLen returns how many URIs f remembers validators for.
func (f *Fetcher) HTTPIndexLen() int {
	if f.index == nil {
		return 0
	}
	return f.index.len()
}
