//go:build !integration

package rabbittest

// integration is unset in builds for unit tests: Main starts no node.
const integration = false
