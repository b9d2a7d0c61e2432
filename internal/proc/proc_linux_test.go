package proc

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

func TestTokenShape(t *testing.T) {
	t.Parallel()
	parts := strings.Split(Self(), "/")
	if len(parts) != 3 || parts[0] == "" || !strings.HasPrefix(parts[1], "pid:[") || parts[2] == "" {
		t.Fatalf("Self() = %q, want boot id/pid namespace/start time", Self())
	}
	if tok, err := Token(os.Getpid()); err != nil || tok != Self() {
		t.Fatalf("Token(self) = %q, %v; want %q", tok, err, Self())
	}
}

// A killed child not yet reaped by its parent is a zombie: gone already.
func TestGoneZombie(t *testing.T) {
	t.Parallel()
	cmd := startSleep(t)
	pid := cmd.Process.Pid
	tok, err := Token(pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// waitid(WEXITED|WNOWAIT) waits for the exit and leaves the child
	// unreaped.
	const pPID, wExited, wNoWait = 1, 4, 0x1000000
	var info [128]byte
	if _, _, errno := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pid),
		uintptr(unsafe.Pointer(&info[0])), wExited|wNoWait, 0, 0); errno != 0 {
		t.Fatal(errno)
	}
	if _, state, err := stat(pid); err != nil || state != 'Z' {
		t.Fatalf("process %d after SIGKILL: state %c, err %v; want a zombie", pid, state, err)
	}
	if !Gone(pid, tok) {
		t.Fatalf("Gone(%d) = false for a zombie", pid)
	}
	if _, err := Token(pid); err == nil {
		t.Fatal("Token of a zombie succeeded")
	}
}

// A live pid whose start time differs from the token's is a later
// process that reuses the pid; a token of another boot or pid namespace
// cannot be judged.
func TestGoneTokenMismatch(t *testing.T) {
	t.Parallel()
	cmd := startSleep(t)
	pid := cmd.Process.Pid
	tok, err := Token(pid)
	if err != nil {
		t.Fatal(err)
	}
	p := strings.Split(tok, "/")
	for _, c := range []struct {
		name, tok string
		want      bool
	}{
		{"SameProcess", tok, false},
		{"ReusedPID", p[0] + "/" + p[1] + "/" + p[2] + "0", true},
		{"OtherBoot", "00000000-0000-0000-0000-000000000000/" + p[1] + "/" + p[2] + "0", false},
		{"OtherPIDNamespace", p[0] + "/pid:[1]/" + p[2] + "0", false},
		{"Garbled", "garbled", false},
	} {
		if got := Gone(pid, c.tok); got != c.want {
			t.Errorf("%s: Gone(%d, %q) = %v, want %v", c.name, pid, c.tok, got, c.want)
		}
	}
}
