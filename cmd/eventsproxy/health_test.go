package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHealth(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/__lbheartbeat__" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
	}))
	defer srv.Close()
	noEnv := func(string) string { return "" }
	for _, tc := range []struct {
		name   string
		status int
		args   []string
		want   int
	}{
		{"alive", http.StatusOK, []string{"--url", srv.URL + "/__lbheartbeat__"}, 0},
		{"not 200", http.StatusServiceUnavailable, []string{"--url", srv.URL + "/__lbheartbeat__"}, 1},
		{"nobody listening", http.StatusOK, []string{"--url", "http://127.0.0.1:1/__lbheartbeat__"}, 1},
		{"bad flag", http.StatusOK, []string{"--nope"}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status = tc.status
			var stdout, stderr bytes.Buffer
			if got := run(context.Background(), append([]string{"health"}, tc.args...), noEnv, nil, &stdout, &stderr); got != tc.want {
				t.Errorf("exit %d, want %d; stderr: %s", got, tc.want, stderr.String())
			}
		})
	}
}

func TestDefaultHealthURL(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{nil, "http://127.0.0.1:8080/__lbheartbeat__"},
		{map[string]string{"PORT": "9000"}, "http://127.0.0.1:9000/__lbheartbeat__"},
		{map[string]string{"LISTEN": ":8081", "PORT": "9000"}, "http://127.0.0.1:8081/__lbheartbeat__"},
		{map[string]string{"LISTEN": "0.0.0.0:8082"}, "http://127.0.0.1:8082/__lbheartbeat__"},
	} {
		got := defaultHealthURL(func(k string) string { return tc.env[k] })
		if got != tc.want {
			t.Errorf("env %v: %s, want %s", tc.env, got, tc.want)
		}
	}
	var stdout bytes.Buffer
	if run(context.Background(), []string{"health", "--help"}, func(string) string { return "" }, nil, &stdout, &stdout) != 0 || !strings.Contains(stdout.String(), "Usage: eventsproxy health") {
		t.Errorf("health --help: %s", stdout.String())
	}
}
