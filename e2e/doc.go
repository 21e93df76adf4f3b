// Package e2e holds end-to-end tests that run the real binaries (worker,
// enqueue, twiliosim) against a private redis-server, as a user would.
package e2e
