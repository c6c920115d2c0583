//go:build integration

package rabbittest

// integration is set in builds for the integration tests, whose TestMain
// (Main) then starts a node of the test binary's own.
const integration = true
