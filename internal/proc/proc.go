// Package proc tells whether a process recorded earlier on this machine
// has ended, so that a restarted worker can take its id back at once
// instead of waiting for the old holder's heartbeat to lapse.
//
// A pid alone is not enough: the kernel hands pids out again. A token
// records what only that one process has. On Linux it is the boot id, the
// pid namespace and the process's start time (field 22 of /proc/PID/stat):
// a later process under the same pid has another start time, and a
// process of another boot or another pid namespace (a container sharing
// the host name) cannot be judged from here at all. Elsewhere the token is
// empty and only kill(pid, 0) is asked.
package proc

// Gone reports whether the process recorded as pid with token has surely
// ended, judged from this machine. It answers false whenever it cannot
// tell: a pid of 0 or less, a token from another boot or pid namespace, or
// a process that exists but belongs to another user.
func Gone(pid int, token string) bool {
	if pid <= 0 {
		return false
	}
	return gone(pid, token)
}

// Self returns this process's token ("" where the OS offers none).
func Self() string {
	return self
}

// Token returns the token of a running process: "" where the OS offers
// none, an error when the process cannot be read (it does not exist).
func Token(pid int) (string, error) {
	return token(pid)
}
