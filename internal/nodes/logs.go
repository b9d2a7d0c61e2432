package nodes

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"time"

	"github.com/pkg/sftp"
)

// Tail writes the last n lines of a file on the node to w. With follow it
// then writes what is appended, until ctx is done; a file that shrinks
// (rotated, or truncated) is followed from its new start, and a file that
// does not exist yet is waited for.
func (c *Conn) Tail(ctx context.Context, name string, n int, follow bool, w io.Writer) error {
	sc, err := c.SFTP()
	if err != nil {
		return err
	}
	var off int64
	err = c.bounded(ctx, "read "+name, func(context.Context) error {
		st, err := sc.Stat(name)
		if err != nil {
			if follow && isNotExist(err) {
				return nil
			}
			return err
		}
		off, err = lastLines(sc, name, st.Size(), n)
		if err != nil {
			return err
		}
		off, err = copyFrom(sc, name, off, st.Size(), !follow, w)
		return err
	})
	if err != nil {
		if isNotExist(err) {
			return fmt.Errorf("%s does not exist (has the worker been started on this node?)", name)
		}
		return err
	}
	if !follow {
		return nil
	}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		// Ending a follow is the normal way out, not a fault: a cancel
		// that reached bounded would close the connection under every
		// other user of it. Each read stays bounded by the timeout, and
		// the cancel is seen at the next tick.
		err := c.bounded(context.WithoutCancel(ctx), "follow "+name, func(context.Context) error {
			st, err := sc.Stat(name)
			if err != nil {
				if isNotExist(err) {
					return nil
				}
				return err
			}
			size := st.Size()
			if size < off {
				off = 0
			}
			if size > off {
				off, err = copyFrom(sc, name, off, size, false, w)
			}
			return err
		})
		if err != nil {
			return err
		}
	}
}

// lastLines finds the offset where the last n lines of a file start.
func lastLines(sc *sftp.Client, name string, size int64, n int) (int64, error) {
	if n <= 0 {
		return size, nil
	}
	f, err := sc.Open(name)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	const chunk = 64 << 10
	end := size
	newlines := 0
	buf := make([]byte, chunk)
	for end > 0 {
		start := max(0, end-chunk)
		b := buf[:end-start]
		if _, err := f.ReadAt(b, start); err != nil && err != io.EOF {
			return 0, err
		}
		for i := len(b) - 1; i >= 0; i-- {
			if b[i] != '\n' || start+int64(i) == size-1 {
				continue
			}
			newlines++
			if newlines == n {
				return start + int64(i) + 1, nil
			}
		}
		end = start
	}
	return 0, nil
}

// copyFrom copies the file's bytes from off to end into w, and returns
// the offset reached. Unless all is set, only whole lines are copied, so
// that a line being written is shown once complete.
func copyFrom(sc *sftp.Client, name string, off, end int64, all bool, w io.Writer) (int64, error) {
	f, err := sc.Open(name)
	if err != nil {
		return off, err
	}
	defer f.Close()
	data := make([]byte, end-off)
	k, err := f.ReadAt(data, off)
	if err != nil && err != io.EOF {
		return off, err
	}
	data = data[:k]
	if !all {
		i := bytes.LastIndexByte(data, '\n')
		if i < 0 {
			return off, nil
		}
		data = data[:i+1]
	}
	if _, err := w.Write(data); err != nil {
		return off, err
	}
	return off + int64(len(data)), nil
}
