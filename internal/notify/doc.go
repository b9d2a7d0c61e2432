// Package notify wakes Pampa's loops without waiting for their next poll.
//
// A Bus carries empty signals on named topics: "dispatch" wakes the
// dispatcher when a worker's queue runs low, "worker:<id>" wakes a worker
// when rows were reserved for it. Signals coalesce (a waiting loop is woken
// once however many arrive) and may be lost; every loop still polls, so a
// lost signal costs one poll interval, never a task.
//
// Between processes, signals go through PostgreSQL's LISTEN/NOTIFY
// (Sender, Listener) or, where the engine has none, through Unix sockets
// between the processes of one machine (Local).
//
// # Local
//
// The processes of one machine meet in a directory: "<database
// file>.pampa-signals" beside an SQLite file, or, for a database with no
// file here (CockroachDB) or a path too long for a socket, a private one
// under the temporary directory named from a hash of the URL or the path.
// Each process binds one Unix datagram socket there, named by a random id
// and a short hash of each topic it listens to, or ".all" past maxTopics:
//
//	jobs.db.pampa-signals/
//	├── 3f9a61c0.db8d1b   a dispatcher ("dispatch")
//	├── 8d2e77b4.215516   worker local.1 ("worker:local.1")
//	└── a07c3d12.all      a dispatcher and four workers in one process
//
// A process that listens to one more topic renames its socket, which the
// kernel does atomically while the socket stays bound, so the name is the
// whole registry: no file to keep in step with the socket, nothing left
// half-written by a crash. To signal a topic, a process lists the directory
// and writes the topic as one datagram to each socket whose name carries
// its hash, its own excepted: its bus has already woken its own loops, so
// its signals are never delivered to it twice. A receiver checks the topic
// it reads, since a ".all" socket, or hashes that collide, bring it others.
//
// Writes never wait: the socket is non-blocking, and a datagram that does
// not fit a receiver's queue is dropped (a receiver with a full queue has
// wake-ups enough to read). A write refused because no process holds the
// socket any more (it died without removing it) removes the file; so does
// the sweep each process makes of the directory when it starts. The last
// process out removes the directory.
//
// The directory lets in whoever may write the database (the owner, and the
// group and others when the file lets them write it), as they run
// dispatchers and workers too. A directory under the temporary directory
// is private to the user, as anyone may create names there: processes of
// other users, or a directory made by someone else, get no wake-ups and
// poll.
//
// Why by hand: no library carries wake-ups between unrelated processes of
// one machine without a server. Unix datagram sockets do it with the net
// package and x/sys/unix alone: one message per write and no connection to
// keep, kernel-buffered, no file system write per signal, and a dead
// receiver shows itself to its senders. Watching files (inotify) would
// write the file system on every signal and wake every watcher; named
// pipes block until both ends are open.
package notify
