//go:build !linux

package execcall

// waitLeader cannot wait without reaping here: the group is killed just
// after the process is reaped instead.
func waitLeader(int) bool { return false }
