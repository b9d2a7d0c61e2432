//go:build unix

package notify

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Local carries a bus's signals between the processes of one machine that
// share a database whose engine has no LISTEN/NOTIFY, over Unix datagram
// sockets in one directory (see the package doc for the scheme, and why by
// hand). Sends never wait; own signals are never sent back to oneself.
type Local struct {
	dir  string
	id   string
	bus  *Bus
	log  *slog.Logger
	conn *net.UnixConn
	raw  syscall.RawConn

	mu     sync.Mutex
	topics map[string]bool
	name   string // the socket's file name now
	closed bool
	shut   atomic.Bool // closed, read without the lock

	listMu  sync.Mutex
	listing listing

	received atomic.Int64 // datagrams read, for tests
}

// listing is the directory's sockets as last read, with its mtime then.
// A send reads the directory again only when its mtime has changed, or
// when the mtime was too recent to tell: a file system whose clock ticks
// coarsely (a second, two on FAT) stamps two changes within a tick alike,
// so a listing is trusted only once its mtime is older than any tick
// (the way Git treats index entries it calls racy).
type listing struct {
	mtime time.Time
	sure  bool
	peers []peer
}

// racyWindow is how old a directory's mtime must be for its listing to be
// trusted while the mtime stays the same.
const racyWindow = 2 * time.Second

// peer is one socket of the directory.
type peer struct {
	path   string
	hashes []string // nil: every topic
}

// LocalOptions say where a Local meets the other processes of its machine.
type LocalOptions struct {
	// File is the database file the processes share: the directory goes
	// beside it, its permissions following the file's.
	File string
	// Key names a database that has no file here, alike in every process
	// that uses it (its URL, password left out): the directory goes under
	// TempDir, named from the key's hash. Used when File is "".
	Key string
	// TempDir holds the directories that cannot go beside the database;
	// default os.TempDir().
	TempDir string
	Bus     *Bus
	Log     *slog.Logger
}

const (
	// dirSuffix follows the database file's name in the directory's.
	dirSuffix = ".pampa-signals"
	// maxSocketPath bounds a socket's path: sun_path holds 108 bytes on
	// Linux and 104 on the BSDs and macOS, the final NUL included.
	maxSocketPath = 103
	// maxTopics is how many topics' hashes a socket's name carries; past
	// it the name says ".all" and the receiver picks its topics itself.
	// A dispatcher listens to one topic, a worker to one.
	maxTopics = 3
	// idLen and hashLen are the lengths of a name's parts, in hex digits:
	// ids need only differ among the live processes of one directory, and
	// a hash that collides costs one datagram the receiver drops.
	idLen, hashLen = 8, 6
	// maxName is the longest socket name.
	maxName = idLen + maxTopics*(1+hashLen)
	// allTopics ends the name of a socket that wants every topic.
	allTopics = "all"
)

// OpenLocal binds this process's socket in the directory opts choose,
// creating the directory if needed. Call Run to receive signals, and Close
// (or end Run's context) to remove the socket.
func OpenLocal(opts LocalOptions) (*Local, error) {
	if opts.TempDir == "" {
		opts.TempDir = os.TempDir()
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	dir, dirPerm, sockPerm, private, err := localDir(opts)
	if err != nil {
		return nil, err
	}
	l := &Local{dir: dir, bus: opts.Bus, log: opts.Log, topics: map[string]bool{}}
	var id [idLen / 2]byte
	_, _ = rand.Read(id[:])
	l.id = hex.EncodeToString(id[:])
	l.name = l.id
	path := filepath.Join(dir, l.name)
	var conn *net.UnixConn
	// The last process out removes the directory (see Close): one that
	// does so between our making it and our bind makes us try again.
	for try := 0; ; try++ {
		if err := makeDir(dir, dirPerm, private); err != nil {
			return nil, err
		}
		l.sweep()
		var err error
		conn, err = net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) || try == 2 {
			return nil, fmt.Errorf("signals directory %s: bind a socket: %w", dir, err)
		}
	}
	if err := os.Chmod(path, sockPerm); err != nil {
		conn.Close()
		os.Remove(path)
		return nil, fmt.Errorf("signals directory %s: %w", dir, err)
	}
	raw, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		os.Remove(path)
		return nil, err
	}
	l.conn, l.raw = conn, raw
	return l, nil
}

// localDir chooses the directory and the permissions of it and of the
// sockets; private is true for a directory under the temporary directory.
func localDir(opts LocalOptions) (dir string, dirPerm, sockPerm fs.FileMode, private bool, err error) {
	dirPerm, sockPerm = 0o700, 0o600
	key := opts.Key
	if opts.File != "" {
		dir = opts.File + dirSuffix
		if fi, err := os.Stat(opts.File); err == nil {
			dirPerm, sockPerm = permsFor(fi.Mode())
		}
		if len(dir)+1+maxName <= maxSocketPath {
			return dir, dirPerm, sockPerm, false, nil
		}
		// Too deep for a socket's path: a private directory named from
		// the path instead, as every process derives it alike.
		key = dir
		dirPerm, sockPerm = 0o700, 0o600
	}
	sum := sha256.Sum256([]byte(key))
	name := "pampa-signals-" + strconv.Itoa(os.Getuid()) + "-" + hex.EncodeToString(sum[:6])
	// A long TMPDIR (macOS gives one of some 50 bytes) leaves /tmp.
	for _, root := range []string{opts.TempDir, "/tmp"} {
		dir = filepath.Join(root, name)
		if len(dir)+1+maxName <= maxSocketPath {
			return dir, 0o700, 0o600, true, nil
		}
	}
	return "", 0, 0, false, fmt.Errorf("signals directory %s: too long a path for the sockets in it (%d bytes at most, with their names)", filepath.Join(opts.TempDir, name), maxSocketPath)
}

// permsFor gives the directory and its sockets to the owner, and to the
// group and others when the database file lets them write it (sending to
// a socket takes write permission on it).
func permsFor(file fs.FileMode) (dir, sock fs.FileMode) {
	dir, sock = 0o700, 0o600
	if file&0o020 != 0 {
		dir, sock = dir|0o070, sock|0o060
	}
	if file&0o002 != 0 {
		dir, sock = dir|0o007, sock|0o006
	}
	return dir, sock
}

// makeDir creates the directory with its permissions whatever the umask,
// or checks the one there: a directory, not a link to one, and when
// private, this user's and closed to everyone else.
func makeDir(dir string, perm fs.FileMode, private bool) error {
	err := os.Mkdir(dir, perm)
	if err == nil {
		return os.Chmod(dir, perm)
	}
	if !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("signals directory: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("signals directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("signals directory %s: not a directory", dir)
	}
	if private {
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok || int(st.Uid) != os.Getuid() || fi.Mode().Perm()&0o077 != 0 {
			return fmt.Errorf("signals directory %s: not this user's alone (mode %v); remove it", dir, fi.Mode().Perm())
		}
	}
	return nil
}

// sweep removes the sockets of processes gone without removing theirs.
func (l *Local) sweep() {
	entries, err := os.ReadDir(l.dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.Type() != fs.ModeSocket {
			continue
		}
		if _, _, ok := parseName(e.Name()); !ok {
			continue
		}
		path := filepath.Join(l.dir, e.Name())
		c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
		if err == nil {
			c.Close()
			continue
		}
		if errors.Is(err, unix.ECONNREFUSED) {
			os.Remove(path)
		}
	}
}

// Dir is the directory the processes meet in.
func (l *Local) Dir() string { return l.dir }

// topicHash is the short hash of a topic in socket names.
func topicHash(topic string) string {
	sum := sha256.Sum256([]byte(topic))
	return hex.EncodeToString(sum[:])[:hashLen]
}

// parseName splits a socket's name into its process id and the hashes of
// its topics (nil for all topics); ok is false for a name not of ours.
func parseName(name string) (id string, hashes []string, ok bool) {
	parts := strings.Split(name, ".")
	if len(parts[0]) != idLen {
		return "", nil, false
	}
	if len(parts) == 2 && parts[1] == allTopics {
		return parts[0], nil, true
	}
	for _, h := range parts[1:] {
		if len(h) != hashLen {
			return "", nil, false
		}
	}
	if len(parts) == 1 {
		return parts[0], []string{}, true
	}
	return parts[0], parts[1:], true
}

// nameFor is the socket name that carries the topics.
func (l *Local) nameFor(topics map[string]bool) string {
	if len(topics) > maxTopics {
		return l.id + "." + allTopics
	}
	hashes := make([]string, 0, len(topics))
	for t := range topics {
		hashes = append(hashes, topicHash(t))
	}
	slices.Sort(hashes) // so that the name depends only on the set
	if len(hashes) == 0 {
		return l.id
	}
	return l.id + "." + strings.Join(hashes, ".")
}

// Listen starts receiving a topic: the socket is renamed to carry it, then
// the topic is signalled here once, since signals sent before are lost.
func (l *Local) Listen(topic string) {
	l.mu.Lock()
	if l.closed || l.topics[topic] {
		l.mu.Unlock()
		return
	}
	l.topics[topic] = true
	name := l.nameFor(l.topics)
	if name != l.name {
		if err := os.Rename(filepath.Join(l.dir, l.name), filepath.Join(l.dir, name)); err != nil {
			l.log.Warn("signals socket not renamed; polling for the topic", "topic", topic, "err", err)
		} else {
			l.name = name
		}
	}
	l.mu.Unlock()
	l.bus.NotifyLocal(topic)
}

// Send signals a topic to the other processes listening to it; it never
// waits for them.
func (l *Local) Send(topic string) {
	if l.shut.Load() {
		return
	}
	h := topicHash(topic)
	msg := []byte(topic)
	for _, p := range l.peers() {
		if !wants(p.hashes, h) {
			continue
		}
		err := l.write(p.path, msg)
		switch {
		case err == nil:
		case errors.Is(err, unix.ECONNREFUSED):
			// Nobody holds the socket: its process died without
			// removing it.
			os.Remove(p.path)
		case errors.Is(err, unix.ENOENT), errors.Is(err, unix.EAGAIN), errors.Is(err, unix.ENOBUFS):
			// Renamed or removed meanwhile, or its queue is full: a
			// lost signal, which polling covers.
		default:
			l.log.Debug("signal not sent", "topic", topic, "to", p.path, "err", err)
		}
	}
}

// peers are the other processes' sockets, read from the directory when it
// may have changed since the last listing.
func (l *Local) peers() []peer {
	fi, err := os.Stat(l.dir)
	if err != nil {
		l.log.Debug("signals directory unreadable", "err", err)
		return nil
	}
	l.listMu.Lock()
	defer l.listMu.Unlock()
	if c := &l.listing; c.sure && fi.ModTime().Equal(c.mtime) {
		return c.peers
	}
	f, err := os.Open(l.dir)
	if err != nil {
		l.log.Debug("signals directory unreadable", "err", err)
		return nil
	}
	// Unsorted: the order does not matter.
	entries, err := f.ReadDir(-1)
	f.Close()
	if err != nil {
		l.log.Debug("signals directory unreadable", "err", err)
	}
	var peers []peer
	for _, e := range entries {
		if e.Type() != fs.ModeSocket {
			continue
		}
		if id, hashes, ok := parseName(e.Name()); ok && id != l.id {
			peers = append(peers, peer{path: filepath.Join(l.dir, e.Name()), hashes: hashes})
		}
	}
	// The mtime read before the listing: a change after it shows as a
	// new mtime next time.
	l.listing = listing{mtime: fi.ModTime(), sure: time.Since(fi.ModTime()) > racyWindow, peers: peers}
	return peers
}

// wants reports whether a socket of those hashes (nil: all) wants h.
func wants(hashes []string, h string) bool {
	if hashes == nil {
		return true
	}
	for _, x := range hashes {
		if x == h {
			return true
		}
	}
	return false
}

// write sends one datagram from this process's socket. The socket is
// non-blocking, as the net package makes every socket, and the write is
// tried once: on a full queue it fails with EAGAIN instead of waiting, as
// the net package's own writes would.
func (l *Local) write(path string, msg []byte) error {
	var werr error
	err := l.raw.Write(func(fd uintptr) bool {
		werr = unix.Sendto(int(fd), msg, 0, &unix.SockaddrUnix{Name: path})
		return true
	})
	if err != nil {
		return err
	}
	return werr
}

// Run delivers the signals received to the bus until ctx ends or the
// Local is closed; it closes the Local when ctx ends.
func (l *Local) Run(ctx context.Context) {
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	buf := make([]byte, 1024)
	for {
		n, err := l.conn.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			l.log.Debug("signal not received", "err", err)
			continue
		}
		l.received.Add(1)
		topic := string(buf[:n])
		l.mu.Lock()
		ok := l.topics[topic]
		l.mu.Unlock()
		if ok {
			l.bus.NotifyLocal(topic)
		}
	}
}

// Close removes this process's socket, and the directory if no other
// process is in it; further signals are neither sent nor received. It is
// idempotent.
func (l *Local) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	l.shut.Store(true)
	err := l.conn.Close()
	if rmErr := os.Remove(filepath.Join(l.dir, l.name)); rmErr != nil && !errors.Is(rmErr, fs.ErrNotExist) {
		err = errors.Join(err, rmErr)
	}
	// Fails, as it should, while other processes' sockets (or anything
	// else) are in it.
	_ = os.Remove(l.dir)
	return err
}
