//go:build unix

package notify

import (
	"context"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// localSetup is two Locals over one database file, as two processes
// would have them.
type localSetup struct {
	file string
	a, b *Local
	ab   *Bus // b's bus
}

// openLocal opens a Local over opts and runs it until the test ends.
func openLocal(t *testing.T, opts LocalOptions) *Local {
	t.Helper()
	if opts.Bus == nil {
		opts.Bus = NewBus()
	}
	l, err := OpenLocal(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return l
}

func setupLocal(t *testing.T) *localSetup {
	t.Helper()
	file := filepath.Join(t.TempDir(), "tasks.db")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	bb := NewBus()
	return &localSetup{file: file, a: openLocal(t, LocalOptions{File: file}), b: openLocal(t, LocalOptions{File: file, Bus: bb}), ab: bb}
}

// noSignal fails if ch holds a signal now.
func noSignal(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
		t.Fatalf("unexpected signal: %s", what)
	default:
	}
}

// waitReceived waits until l has read n datagrams.
func waitReceived(t *testing.T, l *Local, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for l.received.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d datagrams received, want %d", l.received.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestLocalRoutesTopics(t *testing.T) {
	t.Parallel()
	s := setupLocal(t)
	if want := s.file + dirSuffix; s.a.Dir() != want || s.b.Dir() != want {
		t.Fatalf("directories %s and %s, want %s", s.a.Dir(), s.b.Dir(), want)
	}
	wake, unsub := s.ab.Subscribe("worker:local.1")
	defer unsub()
	s.ab.Connect(s.b.Send, s.b.Listen)
	waitSignal(t, wake, "the first look after listening")

	// A topic b does not listen to is not even sent to it: the datagram
	// count shows that only the wanted signal arrived.
	s.a.Send("worker:local.2")
	s.a.Send(Dispatch)
	s.a.Send("worker:local.1")
	waitSignal(t, wake, "a signal from the other process")
	waitReceived(t, s.b, 1)
	if n := s.b.received.Load(); n != 1 {
		t.Fatalf("b read %d datagrams, want only the one of its topic", n)
	}

	// A topic listened to later: the socket is renamed, signals follow.
	late, unsubLate := s.ab.Subscribe(Dispatch)
	defer unsubLate()
	waitSignal(t, late, "the first look for the later topic")
	s.a.Send(Dispatch)
	waitSignal(t, late, "a signal on the later topic")
	noSignal(t, wake, "the worker's topic was not signalled")
	s.a.Send("worker:local.1")
	waitSignal(t, wake, "the first topic still reaches b")
}

// TestLocalOwnSignalsNotEchoed: a bus's own signals wake its loops once,
// in memory; they are never written to its own socket.
func TestLocalOwnSignalsNotEchoed(t *testing.T) {
	t.Parallel()
	s := setupLocal(t)
	wake, unsub := s.ab.Subscribe(Dispatch)
	defer unsub()
	s.ab.Connect(s.b.Send, s.b.Listen)
	waitSignal(t, wake, "the first look after listening")
	for range 3 {
		s.ab.Notify(Dispatch)
		waitSignal(t, wake, "the bus's own signal, in memory")
	}
	// Had b written to itself, those datagrams would be read before a's.
	s.a.Send(Dispatch)
	waitSignal(t, wake, "a signal from the other process")
	waitReceived(t, s.b, 1)
	if n := s.b.received.Load(); n != 1 {
		t.Fatalf("b read %d datagrams, want only a's", n)
	}
	noSignal(t, wake, "own signal delivered twice")
}

// TestLocalListingFollowsChanges: a sender that keeps the directory's
// listing sees a process that starts, or listens to one more topic, later.
func TestLocalListingFollowsChanges(t *testing.T) {
	t.Parallel()
	s := setupLocal(t)
	wake, unsub := s.ab.Subscribe(Dispatch)
	defer unsub()
	s.ab.Connect(s.b.Send, s.b.Listen)
	waitSignal(t, wake, "the first look after listening")
	old := time.Now().Add(-time.Minute)
	if err := os.Chtimes(s.a.Dir(), old, old); err != nil {
		t.Fatal(err)
	}
	s.a.Send(Dispatch)
	waitSignal(t, wake, "a signal")
	if !s.a.listing.sure {
		t.Fatal("the listing of a directory unchanged for a minute is not kept")
	}

	cb := NewBus()
	c := openLocal(t, LocalOptions{File: s.file, Bus: cb})
	late, unsubLate := cb.Subscribe(Dispatch)
	defer unsubLate()
	cb.Connect(c.Send, c.Listen)
	waitSignal(t, late, "the first look after listening")
	s.a.Send(Dispatch)
	waitSignal(t, late, "a signal to the process started after the listing")
	waitSignal(t, wake, "a signal to the first process")

	if err := os.Chtimes(s.a.Dir(), old, old); err != nil {
		t.Fatal(err)
	}
	s.a.Send(Dispatch)
	waitSignal(t, late, "a signal")
	waitSignal(t, wake, "a signal")
	other, unsubOther := s.ab.Subscribe(WorkerTopic("local.1"))
	defer unsubOther()
	waitSignal(t, other, "the first look for the new topic")
	s.a.Send(WorkerTopic("local.1"))
	waitSignal(t, other, "a signal on the topic listened to after the listing")
}

// TestLocalManyTopics: past maxTopics a socket takes every topic, and
// the receiver keeps only its own.
func TestLocalManyTopics(t *testing.T) {
	t.Parallel()
	s := setupLocal(t)
	var chans []<-chan struct{}
	for i := range maxTopics + 2 {
		ch, unsub := s.ab.Subscribe(WorkerTopic(string(rune('a' + i))))
		defer unsub()
		chans = append(chans, ch)
	}
	s.ab.Connect(s.b.Send, s.b.Listen)
	for _, ch := range chans {
		waitSignal(t, ch, "the first look after listening")
	}
	if _, hashes, _ := parseName(filepath.Base(socketOf(t, s.b))); hashes != nil {
		t.Fatalf("socket %s names its topics, want .all", socketOf(t, s.b))
	}
	last := len(chans) - 1
	s.a.Send(WorkerTopic("z")) // arrives, and is dropped
	s.a.Send(WorkerTopic(string(rune('a' + last))))
	waitSignal(t, chans[last], "the last topic")
	waitReceived(t, s.b, 2)
	for i, ch := range chans[:last] {
		noSignal(t, ch, "topic "+string(rune('a'+i)))
	}
}

// socketOf is the path of a Local's socket.
func socketOf(t *testing.T, l *Local) string {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	return filepath.Join(l.dir, l.name)
}

// deadSocket leaves a socket file in dir as a killed process would: bound,
// then closed without being removed.
func deadSocket(t *testing.T, dir, name string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	c.Close() // a datagram socket's Close leaves its file
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("the dead socket's file: %v", err)
	}
	return path
}

func TestLocalRemovesStaleSockets(t *testing.T) {
	t.Parallel()
	s := setupLocal(t)
	topic := WorkerTopic("local.9")
	dead := deadSocket(t, s.a.Dir(), "01234567."+topicHash(topic))
	other := deadSocket(t, s.a.Dir(), "76543210."+topicHash(Dispatch))
	notOurs := filepath.Join(s.a.Dir(), "notes.txt")
	if err := os.WriteFile(notOurs, nil, 0o600); err != nil {
		t.Fatal(err)
	}

	// A sender refused by a dead socket of the topic removes it.
	s.a.Send(topic)
	if _, err := os.Lstat(dead); !os.IsNotExist(err) {
		t.Errorf("dead socket of the topic still there after a send (%v)", err)
	}
	if _, err := os.Lstat(other); err != nil {
		t.Errorf("a dead socket of another topic was removed by the send: %v", err)
	}

	// A process that starts sweeps every dead socket; live ones and
	// files not of ours stay.
	openLocal(t, LocalOptions{File: s.file})
	if _, err := os.Lstat(other); !os.IsNotExist(err) {
		t.Errorf("dead socket still there after a process started (%v)", err)
	}
	for _, l := range []*Local{s.a, s.b} {
		if _, err := os.Lstat(socketOf(t, l)); err != nil {
			t.Errorf("a live socket was removed: %v", err)
		}
	}
	if _, err := os.Lstat(notOurs); err != nil {
		t.Errorf("a file not of ours was removed: %v", err)
	}
}

// TestLocalClosedListener: a closed Local's socket is gone, sends to its
// topics go nowhere without error, and it sends nothing.
func TestLocalClosedListener(t *testing.T) {
	t.Parallel()
	s := setupLocal(t)
	wake, unsub := s.ab.Subscribe(Dispatch)
	defer unsub()
	s.ab.Connect(s.b.Send, s.b.Listen)
	waitSignal(t, wake, "the first look after listening")
	path := socketOf(t, s.b)
	if err := s.b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatalf("socket still there after Close (%v)", err)
	}
	s.a.Send(Dispatch)
	s.ab.Notify(Dispatch) // b's own bus still wakes its loops in memory
	waitSignal(t, wake, "in memory")
	noSignal(t, wake, "a signal after Close")

	// a still reaches a process listening now.
	cb := NewBus()
	c := openLocal(t, LocalOptions{File: s.file, Bus: cb})
	late, unsubLate := cb.Subscribe(Dispatch)
	defer unsubLate()
	cb.Connect(c.Send, c.Listen)
	waitSignal(t, late, "the first look after listening")
	s.a.Send(Dispatch)
	waitSignal(t, late, "a signal to the new process")

	// The last one out removes the directory; not before.
	s.a.Close()
	if _, err := os.Stat(c.Dir()); err != nil {
		t.Fatalf("directory gone with a process still in it: %v", err)
	}
	c.Close()
	if _, err := os.Stat(c.Dir()); !os.IsNotExist(err) {
		t.Fatalf("directory still there after the last process closed (%v)", err)
	}
	// A process that starts makes it again.
	d := openLocal(t, LocalOptions{File: s.file})
	if _, err := os.Stat(d.Dir()); err != nil {
		t.Fatal(err)
	}
}

// TestLocalSendNeverWaits: a receiver that reads nothing fills its queue;
// further signals to it are dropped and the sender goes on.
func TestLocalSendNeverWaits(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "tasks.db")
	a := openLocal(t, LocalOptions{File: file})
	stuck, err := OpenLocal(LocalOptions{File: file, Bus: NewBus()}) // never Run: never reads
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	stuck.Listen(Dispatch)
	done := make(chan struct{})
	go func() {
		for range 10_000 {
			a.Send(Dispatch)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Send waited on a receiver whose queue is full")
	}
}

// TestLocalLongPath: a database file too deep for a socket's path meets
// its processes in a private directory under the temporary directory.
func TestLocalLongPath(t *testing.T) {
	t.Parallel()
	deep := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	if err := os.MkdirAll(deep, 0o700); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(deep, "tasks.db")
	tmp := t.TempDir()
	a := openLocal(t, LocalOptions{File: file, TempDir: tmp})
	bb := NewBus()
	b := openLocal(t, LocalOptions{File: file, TempDir: tmp, Bus: bb})
	if filepath.Dir(a.Dir()) != tmp || a.Dir() != b.Dir() {
		t.Fatalf("directories %s and %s, want one in %s", a.Dir(), b.Dir(), tmp)
	}
	if fi, err := os.Stat(a.Dir()); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("directory %s: %v, %v; want mode 0700", a.Dir(), fi.Mode(), err)
	}
	if _, err := os.Stat(file + dirSuffix); !os.IsNotExist(err) {
		t.Errorf("a directory was made beside the file too (%v)", err)
	}
	wake, unsub := bb.Subscribe(Dispatch)
	defer unsub()
	bb.Connect(b.Send, b.Listen)
	waitSignal(t, wake, "the first look after listening")
	a.Send(Dispatch)
	waitSignal(t, wake, "a signal through the directory under the temporary one")

	// Another file as deep gets a directory of its own.
	other := openLocal(t, LocalOptions{File: filepath.Join(deep, "other.db"), TempDir: tmp})
	if other.Dir() == a.Dir() {
		t.Errorf("two database files share the directory %s", a.Dir())
	}
}

// TestLocalServerKey: processes of a database with no file here meet in
// a private directory named from its key.
func TestLocalServerKey(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	a := openLocal(t, LocalOptions{Key: "postgres://pampa@db1/jobs", TempDir: tmp})
	bb := NewBus()
	b := openLocal(t, LocalOptions{Key: "postgres://pampa@db1/jobs", TempDir: tmp, Bus: bb})
	c := openLocal(t, LocalOptions{Key: "postgres://pampa@db2/jobs", TempDir: tmp})
	if a.Dir() != b.Dir() || a.Dir() == c.Dir() || filepath.Dir(a.Dir()) != tmp {
		t.Fatalf("directories %s, %s, %s", a.Dir(), b.Dir(), c.Dir())
	}
	wake, unsub := bb.Subscribe(Dispatch)
	defer unsub()
	bb.Connect(b.Send, b.Listen)
	waitSignal(t, wake, "the first look after listening")
	c.Send(Dispatch) // another database's: does not reach b
	a.Send(Dispatch)
	waitSignal(t, wake, "a signal from the same database")
	waitReceived(t, b, 1)
	if n := b.received.Load(); n != 1 {
		t.Errorf("b read %d datagrams, want 1", n)
	}

	// A directory there that others may enter is not used.
	open := filepath.Join(tmp, "open")
	if err := os.Mkdir(open, 0o700); err != nil {
		t.Fatal(err)
	}
	dir, _, _, _, err := localDir(LocalOptions{Key: "k", TempDir: open})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenLocal(LocalOptions{Key: "k", TempDir: open}); err == nil || !strings.Contains(err.Error(), "not this user's alone") {
		t.Errorf("OpenLocal in a directory others may enter: %v", err)
	}
}

func TestLocalPermissions(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		file      fs.FileMode
		dir, sock fs.FileMode
	}{
		{0o600, 0o700, 0o600},
		{0o644, 0o700, 0o600},
		{0o660, 0o770, 0o660},
		{0o664, 0o770, 0o660},
		{0o666, 0o777, 0o666},
	} {
		file := filepath.Join(t.TempDir(), "tasks.db")
		if err := os.WriteFile(file, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(file, c.file); err != nil {
			t.Fatal(err)
		}
		l := openLocal(t, LocalOptions{File: file})
		fi, err := os.Stat(l.Dir())
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != c.dir {
			t.Errorf("file %v: directory mode %v, want %v", c.file, fi.Mode().Perm(), c.dir)
		}
		si, err := os.Lstat(socketOf(t, l))
		if err != nil {
			t.Fatal(err)
		}
		if si.Mode().Type() != fs.ModeSocket || si.Mode().Perm() != c.sock {
			t.Errorf("file %v: socket mode %v, want a socket with %v", c.file, si.Mode(), c.sock)
		}
	}
	// Something else where the directory goes is an error, not followed.
	file := filepath.Join(t.TempDir(), "tasks.db")
	if err := os.Symlink(t.TempDir(), file+dirSuffix); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenLocal(LocalOptions{File: file}); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("OpenLocal with a link where the directory goes: %v", err)
	}
}

func TestParseName(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		id     string
		hashes []string
		ok     bool
	}{
		{"01234567", "01234567", []string{}, true},
		{"01234567.abcdef", "01234567", []string{"abcdef"}, true},
		{"01234567.abcdef.012345", "01234567", []string{"abcdef", "012345"}, true},
		{"01234567.all", "01234567", nil, true},
		{"01234567.abc", "", nil, false},
		{"0123456789ab.abcdef", "", nil, false},
		{"short.abcdef", "", nil, false},
		{"notes.txt", "", nil, false},
	} {
		id, hashes, ok := parseName(c.name)
		if id != c.id || ok != c.ok || strings.Join(hashes, ",") != strings.Join(c.hashes, ",") || (hashes == nil) != (c.hashes == nil) {
			t.Errorf("parseName(%q) = %q, %q, %v; want %q, %q, %v", c.name, id, hashes, ok, c.id, c.hashes, c.ok)
		}
	}
}

// BenchmarkLocalSend is the cost of one signal to one listening process.
func BenchmarkLocalSend(b *testing.B) {
	file := filepath.Join(b.TempDir(), "tasks.db")
	ab := NewBus()
	a, err := OpenLocal(LocalOptions{File: file, Bus: ab})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	bb := NewBus()
	l, err := OpenLocal(LocalOptions{File: file, Bus: bb})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go l.Run(ctx)
	l.Listen(Dispatch)
	// A directory left alone a while, as between processes' starts.
	old := time.Now().Add(-time.Minute)
	if err := os.Chtimes(a.Dir(), old, old); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		a.Send(Dispatch)
	}
}
