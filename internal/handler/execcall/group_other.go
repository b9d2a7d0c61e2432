//go:build !unix

package execcall

import (
	"os"
	"syscall"
)

// Without process groups, only the command itself is stopped.
func groupAttr() *syscall.SysProcAttr { return nil }

func signalGroup(pid int, sig syscall.Signal) {
	if p, err := os.FindProcess(pid); err == nil {
		p.Kill()
	}
}
