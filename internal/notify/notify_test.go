package notify

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"go.uber.org/goleak"

	"github.com/pampa-go/pampa/internal/testdb"
)

// TestMain checks, after the tests, that no listener, sender or Local
// outlived its context.
func TestMain(m *testing.M) {
	code := testdb.Run(m)
	if err := goleak.Find(); err != nil && code == 0 {
		fmt.Fprintln(os.Stderr, "goleak:", err)
		code = 1
	}
	os.Exit(code)
}

func TestBusCoalescesAndUnsubscribes(t *testing.T) {
	t.Parallel()
	b := NewBus()
	ch, cancel := b.Subscribe("x")
	b.Notify("x")
	b.Notify("x") // coalesces with the first
	b.Notify("y") // nobody listens
	select {
	case <-ch:
	default:
		t.Fatal("no signal after Notify")
	}
	select {
	case <-ch:
		t.Fatal("two signals where one was expected")
	default:
	}
	cancel()
	b.Notify("x")
	select {
	case <-ch:
		t.Fatal("signal after unsubscribing")
	default:
	}
}

// waitSignal waits for one signal on ch.
func waitSignal(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("no signal: %s", what)
	}
}

// connectedPair is two buses wired to PostgreSQL as two processes would
// be; it returns the second one's listener too.
func connectedPair(t *testing.T, ctx context.Context, url string) (*Bus, *Bus, *Listener) {
	a, _ := connected(t, ctx, url)
	b, l := connected(t, ctx, url)
	return a, b, l
}

// connected is a bus wired to PostgreSQL as a process would be.
func connected(t *testing.T, ctx context.Context, url string) (*Bus, *Listener) {
	t.Helper()
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	b := NewBus()
	log := slog.New(slog.DiscardHandler)
	s := NewSender(db, b, log)
	l := NewListener(url, b, log)
	go s.Run(ctx)
	go l.Run(ctx)
	b.Connect(s.Send, l.Listen)
	return b, l
}

func TestSignalsCrossProcesses(t *testing.T) {
	t.Parallel()
	url := testdb.PostgresURL(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, b, bl := connectedPair(t, ctx, url)

	wake, unsub := b.Subscribe("worker:local.1")
	defer unsub()
	waitSignal(t, wake, "the listener's first look after connecting")
	// Wait until b listens: its first look came after LISTEN.
	a.Notify("worker:local.1")
	waitSignal(t, wake, "a signal sent by another bus")

	// A topic subscribed later is listened to as well.
	late, unsubLate := b.Subscribe("dispatch")
	defer unsubLate()
	waitSignal(t, late, "first look for the later topic")
	a.Notify("dispatch")
	waitSignal(t, late, "a signal on the later topic")

	// The listening connection is killed: it comes back and signals.
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`SELECT pg_terminate_backend($1)`, int64(bl.pid.Load())); err != nil {
		t.Fatal(err)
	}
	waitSignal(t, wake, "the look after reconnecting")
	a.Notify("worker:local.1")
	waitSignal(t, wake, "a signal after reconnecting")
}

// TestOwnSignalsNotEchoed: a signal a bus sends reaches its own process
// once (in memory), not a second time through its listener; signals from
// other processes still arrive.
func TestOwnSignalsNotEchoed(t *testing.T) {
	t.Parallel()
	url := testdb.PostgresURL(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, b, _ := connectedPair(t, ctx, url)
	// Channels are shared by the whole database, and other tests signal
	// "dispatch": a topic of this test's own.
	topic := WorkerTopic("echo-test")
	wake, unsub := b.Subscribe(topic)
	defer unsub()
	waitSignal(t, wake, "the listener's first look after connecting")
	// A signal from a proves b listens, and that the path is fast.
	a.Notify(topic)
	waitSignal(t, wake, "a signal sent by another bus")
	for range 3 {
		b.Notify(topic)
		waitSignal(t, wake, "the bus's own signal, in memory")
		select {
		case <-wake:
			t.Fatal("the bus's own signal came back through its listener")
		case <-time.After(300 * time.Millisecond):
		}
	}
	a.Notify(topic)
	waitSignal(t, wake, "another bus's signal after our own")
}

func TestChannelNames(t *testing.T) {
	t.Parallel()
	if got := Channel("worker:local.1"); got != "pampa.worker:local.1" {
		t.Errorf("Channel = %q", got)
	}
	long := Channel("worker:" + string(make([]byte, 80)))
	if len(long) > 63 {
		t.Errorf("long channel name %q has %d bytes", long, len(long))
	}
	if Channel("worker:a"+string(make([]byte, 80))) == long {
		t.Error("two long topics share a channel")
	}
}

// Signals sent within a transaction arrive when it commits, not before,
// and never when it rolls back; several topics go in one statement.
func TestSendInTx(t *testing.T) {
	t.Parallel()
	url := testdb.PostgresURL(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b, _ := connected(t, ctx, url)
	one, unsubOne := b.Subscribe(WorkerTopic("in-tx.1"))
	defer unsubOne()
	two, unsubTwo := b.Subscribe(WorkerTopic("in-tx.2"))
	defer unsubTwo()
	waitSignal(t, one, "the listener's first look")
	waitSignal(t, two, "the listener's first look")
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	topics := []string{WorkerTopic("in-tx.1"), WorkerTopic("in-tx.2")}
	send := func() *sql.Tx {
		t.Helper()
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := SendInTx(ctx, tx, NewBus().Origin(), topics); err != nil {
			t.Fatal(err)
		}
		return tx
	}
	quiet := func(what string) {
		t.Helper()
		select {
		case <-one:
			t.Fatalf("a signal %s", what)
		case <-two:
			t.Fatalf("a signal %s", what)
		case <-time.After(300 * time.Millisecond):
		}
	}
	tx := send()
	quiet("before the commit")
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	waitSignal(t, one, "the first topic, at the commit")
	waitSignal(t, two, "the second topic, at the commit")
	if err := send().Rollback(); err != nil {
		t.Fatal(err)
	}
	quiet("from a rolled-back transaction")
}
