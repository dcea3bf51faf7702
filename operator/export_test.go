package operator

// EnsureJoinToken is ensureJoinToken, for tests that race it.
var EnsureJoinToken = ensureJoinToken
