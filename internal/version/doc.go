// Package version provides the build's version information: the release
// version and VCS commit that `eventsproxy version` prints and the service's
// /__version__ endpoint serves.
//
// Release builds set Version and Commit at link time:
//
//	go build -ldflags "-X eventsproxy/internal/version.Version=v1.2.3 -X eventsproxy/internal/version.Commit=$(git rev-parse HEAD)" ./cmd/eventsproxy
//
// Without them, Get falls back to what the Go toolchain recorded in the
// binary (runtime/debug.ReadBuildInfo): the module version of `go install
// module@version` builds and the vcs.revision of builds made in a Git
// checkout.
//
// The package imports only the standard library.
package version
