//go:build unix

package proc

import (
	"os"
	"os/exec"
	"testing"
)

// startSleep starts a child process that lives until killed.
func startSleep(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "300")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd
}

func TestGoneAfterKill(t *testing.T) {
	t.Parallel()
	cmd := startSleep(t)
	pid := cmd.Process.Pid
	tok, err := Token(pid)
	if err != nil {
		t.Fatal(err)
	}
	if Gone(pid, tok) {
		t.Fatalf("Gone(%d, %q) = true for a running process", pid, tok)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait() // reaped: the pid is free
	if !Gone(pid, tok) {
		t.Fatalf("Gone(%d, %q) = false after the process was killed and reaped", pid, tok)
	}
	if !Gone(pid, "") {
		t.Fatalf("Gone(%d, \"\") = false after the process was killed and reaped", pid)
	}
}

func TestNotGone(t *testing.T) {
	t.Parallel()
	if Gone(os.Getpid(), Self()) {
		t.Error("this process is reported gone")
	}
	if Gone(os.Getpid(), "") {
		t.Error("this process, recorded without a token, is reported gone")
	}
	for _, pid := range []int{0, -1} {
		if Gone(pid, Self()) {
			t.Errorf("Gone(%d) = true; an unknown pid must never count as gone", pid)
		}
	}
}
