//go:build unix && !linux

package chaos

import "syscall"

// sysProcAttr puts each process in a process group of its own, so that a
// terminal's Ctrl-C reaches the runner alone, which then stops them all.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
