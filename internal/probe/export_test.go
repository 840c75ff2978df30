package probe

// WaitsInPoller reports whether Read waits for records in Go's network poller rather than in
// a system call of its own.
func (t *Tracer) WaitsInPoller() bool { return t.ring != nil }
