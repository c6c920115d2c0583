package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version is the release version, set at link time with
// -X eventsproxy/internal/version.Version=...; "dev" when not set.
// Read it through Get, which falls back to the build information.
var Version = "dev"

// Commit is the VCS commit the binary was built from, set at link time
// with -X eventsproxy/internal/version.Commit=...; "unknown" when not set.
// Read it through Get, which falls back to the build information.
var Commit = "unknown"

// Defaults of Version and Commit: values that mean "not set at link time".
const (
	defaultVersion = "dev"
	defaultCommit  = "unknown"
)

// Info is the version information of the running binary. Its JSON form is
// the body of /__version__.
type Info struct {
	// Version is the release version, or "dev".
	Version string `json:"version"`
	// Commit is the VCS commit, or "unknown".
	Commit string `json:"commit"`
	// Go is the Go toolchain that built the binary, e.g. "go1.26.0".
	Go string `json:"go"`
}

// Get returns the version information of the running binary: Version and
// Commit as set at link time, else the module version and vcs.revision
// that the Go toolchain recorded, else "dev" and "unknown". It may be
// called concurrently.
func Get() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	return resolve(Version, Commit, bi)
}

// String returns the one line that `eventsproxy version` prints:
// "eventsproxy <version> (<commit>, <go version>)".
func (i Info) String() string {
	return fmt.Sprintf("eventsproxy %s (%s, %s)", i.Version, i.Commit, i.Go)
}

// resolve combines the link-time values with the build information bi,
// which may be nil.
func resolve(version, commit string, bi *debug.BuildInfo) Info {
	info := Info{Version: version, Commit: commit, Go: runtime.Version()}
	if bi == nil {
		return info
	}
	if bi.GoVersion != "" {
		info.Go = bi.GoVersion
	}
	// "(devel)" is what the toolchain records for a build of the main
	// module from its own directory: no version at all.
	if info.Version == defaultVersion && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		info.Version = bi.Main.Version
	}
	if info.Commit == defaultCommit {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && s.Value != "" {
				info.Commit = s.Value
			}
		}
	}
	return info
}
