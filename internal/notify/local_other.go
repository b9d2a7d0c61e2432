//go:build !unix

package notify

import (
	"context"
	"errors"
	"log/slog"
)

// Local carries signals between the processes of one machine over Unix
// datagram sockets, which this system lacks: its processes poll.
type Local struct{}

// LocalOptions say where a Local meets the other processes of its machine.
type LocalOptions struct {
	File, Key, TempDir string
	Bus                *Bus
	Log                *slog.Logger
}

// OpenLocal fails: no Unix datagram sockets here.
func OpenLocal(LocalOptions) (*Local, error) {
	return nil, errors.New("no Unix datagram sockets on this system")
}

// Dir is "".
func (*Local) Dir() string { return "" }

// Listen does nothing.
func (*Local) Listen(string) {}

// Send does nothing.
func (*Local) Send(string) {}

// Run returns at once.
func (*Local) Run(context.Context) {}

// Close does nothing.
func (*Local) Close() error { return nil }
