package version

import (
	"encoding/json"
	"runtime"
	"runtime/debug"
	"testing"
)

func TestResolve(t *testing.T) {
	t.Parallel()
	built := &debug.BuildInfo{
		GoVersion: "go1.26.1",
		Main:      debug.Module{Path: "eventsproxy", Version: "v1.4.0"},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
		},
	}
	devel := &debug.BuildInfo{
		GoVersion: "go1.26.1",
		Main:      debug.Module{Path: "eventsproxy", Version: "(devel)"},
	}
	tests := []struct {
		name            string
		version, commit string
		bi              *debug.BuildInfo
		want            Info
	}{
		{"link time wins", "v2.0.0", "abc123", built, Info{"v2.0.0", "abc123", "go1.26.1"}},
		{"build info fills defaults", "dev", "unknown", built,
			Info{"v1.4.0", "0123456789abcdef0123456789abcdef01234567", "go1.26.1"}},
		{"only commit set", "dev", "abc123", built, Info{"v1.4.0", "abc123", "go1.26.1"}},
		{"devel build without VCS", "dev", "unknown", devel, Info{"dev", "unknown", "go1.26.1"}},
		{"no build info", "dev", "unknown", nil, Info{"dev", "unknown", runtime.Version()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := resolve(tt.version, tt.commit, tt.bi); got != tt.want {
				t.Errorf("resolve = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestInfoString(t *testing.T) {
	t.Parallel()
	got := Info{Version: "v1.0.0", Commit: "abc123", Go: "go1.26.0"}.String()
	if want := "eventsproxy v1.0.0 (abc123, go1.26.0)"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
}

func TestInfoJSON(t *testing.T) {
	t.Parallel()
	b, err := json.Marshal(Info{Version: "v1.0.0", Commit: "abc123", Go: "go1.26.0"})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"version":"v1.0.0","commit":"abc123","go":"go1.26.0"}`; string(b) != want {
		t.Errorf("JSON = %s, want %s", b, want)
	}
}

func TestGet(t *testing.T) {
	t.Parallel()
	got := Get()
	if got.Version == "" || got.Commit == "" || got.Go == "" {
		t.Errorf("Get = %+v, want every field set", got)
	}
}
