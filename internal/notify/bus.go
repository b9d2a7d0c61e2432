package notify

import (
	"crypto/rand"
	"encoding/hex"
	"sync"
)

// Topics.
const Dispatch = "dispatch"

// WorkerTopic is the topic that wakes one worker.
func WorkerTopic(id string) string { return "worker:" + id }

// Bus delivers signals between loops of one process and, once connected
// to a Sender and a Listener, between processes.
type Bus struct {
	origin string // marks the signals this bus sends to other processes

	mu       sync.Mutex
	subs     map[string]map[chan struct{}]struct{}
	remote   func(topic string) // sends a signal to other processes
	onListen func(topic string) // starts receiving a topic from them
}

// Connect makes the bus send every signal to other processes too, and
// receive the topics it has subscribers for.
func (b *Bus) Connect(send, listen func(topic string)) {
	b.mu.Lock()
	b.remote, b.onListen = send, listen
	topics := make([]string, 0, len(b.subs))
	for t := range b.subs {
		topics = append(topics, t)
	}
	b.mu.Unlock()
	for _, t := range topics {
		listen(t)
	}
}

// NewBus returns an empty bus.
func NewBus() *Bus {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &Bus{origin: "pampa-origin:" + hex.EncodeToString(b[:]), subs: map[string]map[chan struct{}]struct{}{}}
}

// Origin is the payload of the signals this bus sends to other processes.
// They come back to its own listener too, which drops them: Notify has
// already woken this process's subscribers, and a second wake-up would run
// a dispatcher round, or a worker's claim, for nothing.
func (b *Bus) Origin() string { return b.origin }

// Notify wakes every subscriber of topic, in this process and in others
// when the bus is connected; it never blocks.
func (b *Bus) Notify(topic string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	remote := b.remote
	b.mu.Unlock()
	if remote != nil {
		remote(topic)
	}
	b.NotifyLocal(topic)
}

// NotifyLocal wakes the subscribers of topic in this process only.
func (b *Bus) NotifyLocal(topic string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.subs[topic] {
		select {
		case ch <- struct{}{}:
		default: // already signalled
		}
	}
}

// Subscribe returns a channel that receives a value after Notify(topic),
// and a function that ends the subscription.
func (b *Bus) Subscribe(topic string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	if b == nil {
		return ch, func() {}
	}
	b.mu.Lock()
	if b.subs[topic] == nil {
		b.subs[topic] = map[chan struct{}]struct{}{}
	}
	b.subs[topic][ch] = struct{}{}
	listen := b.onListen
	b.mu.Unlock()
	if listen != nil {
		listen(topic)
	}
	return ch, func() {
		b.mu.Lock()
		delete(b.subs[topic], ch)
		if len(b.subs[topic]) == 0 {
			delete(b.subs, topic)
		}
		b.mu.Unlock()
	}
}
