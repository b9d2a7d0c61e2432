package proc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
)

var self, _ = token(os.Getpid())

// token is "boot id/pid namespace/start time" of a live process.
func token(pid int) (string, error) {
	start, state, err := stat(pid)
	if err != nil {
		return "", err
	}
	if state == 'Z' || state == 'X' {
		return "", fmt.Errorf("process %d has ended (state %c)", pid, state)
	}
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", err
	}
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
	if err != nil {
		ns = "" // hidden from other users: judged by start time alone
	}
	return strings.TrimSpace(string(boot)) + "/" + ns + "/" + start, nil
}

// stat reads a process's start time and state from /proc/PID/stat.
func stat(pid int) (start string, state byte, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, err
	}
	// The command name, field 2, is in parentheses and may hold spaces
	// or parentheses itself: the fields after it follow its last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return "", 0, fmt.Errorf("process %d: unreadable stat", pid)
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3, the state
	if len(f) < 20 || len(f[0]) != 1 {
		return "", 0, fmt.Errorf("process %d: unreadable stat", pid)
	}
	return f[19], f[0][0], nil // field 22
}

func gone(pid int, tok string) bool {
	if tok != "" {
		parts := strings.SplitN(tok, "/", 3)
		mine := strings.SplitN(self, "/", 3)
		if len(parts) != 3 || len(mine) != 3 || parts[0] != mine[0] {
			return false // another boot or machine: cannot tell
		}
		if parts[1] != "" && mine[1] != "" && parts[1] != mine[1] {
			return false // another pid namespace: its pids are not ours
		}
	}
	start, state, err := stat(pid)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return killGone(pid) // no /proc entry: make sure with a signal
	case err != nil:
		return false
	case state == 'Z' || state == 'X':
		return true // ended, not yet reaped by its parent
	case tok == "":
		return false // recorded without a token: a live pid may be it
	}
	return strings.SplitN(tok, "/", 3)[2] != start // a later process took the pid
}

// killGone asks kill(pid, 0): only "no such process" means gone.
func killGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
