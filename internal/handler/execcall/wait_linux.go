package execcall

import (
	"errors"

	"golang.org/x/sys/unix"
)

// waitLeader blocks until the process pid has exited, leaving it
// unreaped (WNOWAIT): until it is reaped, its pid, which is also its
// group's id, cannot be given to another process. It reports whether it
// could wait that way.
func waitLeader(pid int) bool {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			return err == nil
		}
	}
}
