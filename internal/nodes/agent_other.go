//go:build !linux

package nodes

import (
	"context"
	"errors"
)

var errLinuxOnly = errors.New("the node agent runs on Linux only")

func serveStart(_ context.Context, _ *startRequest) startResponse {
	return startResponse{Error: errLinuxOnly.Error()}
}

func execWorker(string, []string) error { return errLinuxOnly }
