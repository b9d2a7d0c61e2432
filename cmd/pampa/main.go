// Command pampa is the stock Pampa binary: dispatcher, workers, reporting
// and setup from a config file. Its workers run the jobs whose processing
// function is a command (exec: in the config, docs/handlers.md); for a
// processing function in Go, build a program of your own that calls
// cli.Main with its handlers.
package main

import "github.com/pampa-go/pampa/cli"

func main() { cli.Main(&cli.Program{}) }
