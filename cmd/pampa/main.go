// Command pampa is the stock Pampa binary: dispatcher, workers, reporting
// and setup from a config file. Its workers run the jobs whose processing
// function is a command (exec: in the config, docs/handlers.md); for a
// processing function in Go, build a program of your own that calls
// cli.Main with its handlers.
//
// Install it with
//
//	go install github.com/pampa-go/pampa/cmd/pampa@latest
//
// or take a release binary made by `make release`.
package main

import "github.com/pampa-go/pampa/cli"

// Stamped by `make release` (scripts/release.sh) with
// -ldflags "-X main.version=... -X main.commit=...". Left empty, the
// command line falls back to what the Go toolchain recorded in the build:
// the module version of `go install ...@v1.2.3`, or "dev".
var version, commit string

func main() { cli.Main(&cli.Program{Version: version, Commit: commit}) }
