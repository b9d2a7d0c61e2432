//go:build linux

package chaos

import "syscall"

// sysProcAttr puts each process in a process group of its own, so that a
// terminal's Ctrl-C reaches the runner alone (which then stops them all),
// and has the kernel SIGKILL it should the runner die without cleaning up.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
