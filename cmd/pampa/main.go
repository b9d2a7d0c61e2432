// Command pampa is the stock Pampa binary: dispatcher, reporting and setup
// from a config file. Workers need the processing functions compiled in:
// build a program of your own that calls cli.Main with its handlers.
package main

import "github.com/pampa-go/pampa/cli"

func main() { cli.Main(&cli.Program{}) }
