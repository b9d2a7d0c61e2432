//go:build !linux

package nodes

import (
	"context"
	"errors"
	"fmt"
	"os"
)

var errLinuxOnly = errors.New("the node agent runs on Linux only")

func serveStart(_ context.Context, _ *startRequest) startResponse {
	return startResponse{Error: errLinuxOnly.Error()}
}

func execWorker(string, []string) error { return errLinuxOnly }

func supervise(context.Context, superviseSpec) int {
	fmt.Fprintln(os.Stderr, "nodes agent supervise:", errLinuxOnly)
	return 2
}

func recordExit(string, string, *ExitInfo) error { return errLinuxOnly }
