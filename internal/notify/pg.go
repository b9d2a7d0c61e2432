package notify

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// Channel is the PostgreSQL channel that carries a topic. Channel names
// are identifiers (at most 63 bytes); long topics are hashed.
func Channel(topic string) string {
	c := "pampa." + topic
	if len(c) <= 63 {
		return c
	}
	sum := sha256.Sum256([]byte(topic))
	return "pampa.h." + hex.EncodeToString(sum[:16])
}

// Listener keeps one dedicated PostgreSQL connection LISTENing on the
// channels of the topics it is given, and turns each notification into a
// signal on its bus. It reconnects when the connection drops; after a
// reconnect it signals every topic once, since notifications sent while it
// was away are lost.
type Listener struct {
	url string
	bus *Bus
	log *slog.Logger

	mu     sync.Mutex
	topics map[string]string // channel → topic
	added  chan struct{}     // a topic was added: LISTEN to it
	pid    atomic.Uint32     // the listening backend, for tests
}

// NewListener makes a listener over a database URL; call Run to start it.
func NewListener(url string, bus *Bus, log *slog.Logger) *Listener {
	return &Listener{url: url, bus: bus, log: log, topics: map[string]string{}, added: make(chan struct{}, 1)}
}

// Listen adds a topic. It takes effect within a moment if Run is going.
func (l *Listener) Listen(topic string) {
	l.mu.Lock()
	l.topics[Channel(topic)] = topic
	l.mu.Unlock()
	select {
	case l.added <- struct{}{}:
	default:
	}
}

// Run listens until ctx ends.
func (l *Listener) Run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := l.session(ctx)
		if ctx.Err() != nil {
			return
		}
		l.log.Warn("notification connection lost; polling until it is back", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// session is one connection's life: LISTEN, then wait for notifications.
func (l *Listener) session(ctx context.Context) error {
	connectCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := pgx.Connect(connectCtx, l.url)
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	l.pid.Store(conn.PgConn().PID())
	listening := map[string]bool{}
	for {
		l.mu.Lock()
		var missing []string
		for ch := range l.topics {
			if !listening[ch] {
				missing = append(missing, ch)
			}
		}
		l.mu.Unlock()
		for _, ch := range missing {
			if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
				return err
			}
			listening[ch] = true
			// Whatever was sent before we listened is lost: look once.
			l.mu.Lock()
			topic := l.topics[ch]
			l.mu.Unlock()
			l.bus.NotifyLocal(topic)
		}
		waitCtx, stopWait := context.WithCancel(ctx)
		go func() {
			select {
			case <-l.added:
				stopWait()
			case <-waitCtx.Done():
			}
		}()
		n, err := conn.WaitForNotification(waitCtx)
		stopWait()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if waitCtx.Err() != nil && !conn.IsClosed() {
				continue // woken to LISTEN to a new topic
			}
			return err
		}
		if n.Payload == l.bus.Origin() {
			continue // our own signal, already delivered here
		}
		l.mu.Lock()
		topic, ok := l.topics[n.Channel]
		l.mu.Unlock()
		if ok {
			l.bus.NotifyLocal(topic)
		}
	}
}

// Sender forwards a bus's signals to other processes with pg_notify, from
// a goroutine of its own so that callers never wait on the network.
// Signals for the same topic sent while one is in flight coalesce.
type Sender struct {
	db     *sql.DB
	origin string // the payload: the bus's Origin
	log    *slog.Logger

	mu      sync.Mutex
	pending map[string]bool
	kick    chan struct{}
}

// NewSender makes a sender of a bus's signals over a connection pool; call
// Run to start it.
func NewSender(db *sql.DB, bus *Bus, log *slog.Logger) *Sender {
	return &Sender{db: db, origin: bus.Origin(), log: log, pending: map[string]bool{}, kick: make(chan struct{}, 1)}
}

// Send queues a signal for topic; it never blocks.
func (s *Sender) Send(topic string) {
	s.mu.Lock()
	s.pending[topic] = true
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Run sends queued signals until ctx ends.
func (s *Sender) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		}
		s.mu.Lock()
		batch := make([]string, 0, len(s.pending))
		for topic := range s.pending {
			batch = append(batch, topic)
		}
		s.pending = map[string]bool{}
		s.mu.Unlock()
		// One statement for the batch: a NOTIFY is a commit, on a durable
		// server a disk flush.
		sendCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := s.db.ExecContext(sendCtx, sendSQL, channels(batch), s.origin)
		cancel()
		if err != nil && ctx.Err() == nil {
			// Polling covers a lost signal; say so once per failure.
			s.log.Debug("pg_notify failed", "topics", batch, "err", err)
		}
	}
}

// sendSQL notifies each channel of $1 with the payload $2.
const sendSQL = "SELECT pg_notify(c, $2) FROM unnest($1::text[]) AS c"

func channels(topics []string) []string {
	out := make([]string, len(topics))
	for i, t := range topics {
		out[i] = Channel(t)
	}
	return out
}

// SendInTx signals each topic from origin (a Bus's Origin) within tx: the
// signals reach other processes when tx commits, which is when what they
// announce can be seen, and cost no commit of their own. The dispatcher
// wakes the workers it reserved rows for this way.
func SendInTx(ctx context.Context, tx *sql.Tx, origin string, topics []string) error {
	if len(topics) == 0 {
		return nil
	}
	_, err := tx.ExecContext(ctx, sendSQL, channels(topics), origin)
	return err
}
