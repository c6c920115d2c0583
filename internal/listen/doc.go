// Package listen provides the command-line client of `eventsproxy listen`:
// it reads the command line into Options, opens the event stream of a
// running eventsproxy with those bindings, and writes each message to
// stdout, as a JSON line for programs (jq) or as a coloured one-line
// summary for a person at a terminal. Notes, warnings and errors go to
// stderr, and every way the client can end maps to an exit code that
// scripts can rely on (ExitCode).
//
// It reads the stream with internal/sse's Reader, which parses exactly as
// a browser's EventSource does.
package listen
