// Package config provides the `serve` command's configuration: one Config
// struct, its defaults, loading from command-line flags and environment
// variables (every flag has one), and validation that reports every problem
// at once.
package config
