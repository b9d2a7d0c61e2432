// Package pampa runs jobs over the rows of your own SQL tables and spreads
// the work over worker processes on many machines.
//
// Each row of a job's table is a task. Tracking columns on that same row
// (their names are yours to choose) record which worker holds it, when it
// was reserved, how many times it was tried, when the try started and
// ended, whether it succeeded and why it failed. Enqueueing is a plain
// INSERT in your own transaction, so data and processing state never
// drift apart.
//
// # The main types
//
//   - [Cluster] holds the definitions: the [Database], the [Node]s workers
//     run on, and the [Job]s (table, key, [TrackingFields], limits, the
//     [ProcessFunc] and [Hooks]). Build it in Go or load it with
//     [LoadConfig].
//   - [Open] connects a [Client] to the database and checks every job's
//     table; [Setup] adds missing tracking columns and indexes first.
//   - [Client.NewDispatcher] makes a [Dispatcher]: one of several, one of
//     which leads (a lease row) and reserves rows for workers.
//   - [Client.NewWorker] makes a [Worker]: a process under an id
//     "<node>.<n>" that runs the tasks reserved for it, each as a [Task].
//   - [Client.Report], [Client.Tasks], [Client.Task],
//     [Client.FailedTasks], [Client.Retry] and [Client.Workers] inspect
//     and steer; [Client.Pause], [Client.Cancel] and [Client.Drain] act on
//     a job, a task, a worker.
//
// # How a task travels
//
//	INSERT ──▶ pending ──reserve (leading dispatcher)──▶ reserved for W
//	               ▲                                        │ claim (worker W)
//	               │ relaunch: tries left                   ▼
//	               ├─────────── failed try ◀──────────── running ──▶ succeeded
//	               │                                        │
//	               └── gone worker, expired try ◀───────────┘
//	                         (no tries left: failed for good)
//
// Every write a worker makes to a row is fenced by (key, reserved for
// me, my try): a worker declared dead that comes back cannot overwrite a
// row that moved on. Timestamps come from the database's clock.
//
// # The engine
//
// The root package is the public face; the engine behind it is a set of
// small services under internal/, which never import this package:
//
//	Worker     = heartbeat (registry) + producer (claims) + executor (one
//	             try under its deadline) + completer (records outcomes in
//	             batches), wired by internal/worker
//	Dispatcher = leadership (lease) + maintenance (mark dead, relaunch) +
//	             dispatch (stretch, reserve), wired by internal/dispatcher
//	store      = the only door to SQL, one dialect per database
//
// docs/architecture.md draws them in full. To unit-test a processing
// function without a database, see package pampatest.
//
// # Example
//
//	c := &pampa.Cluster{Database: pampa.Database{URL: "tasks.db"}}
//	_ = c.AddNode(pampa.Node{Name: "local", MaxWorkers: 4})
//	_ = c.AddJob(pampa.Job{
//		Name: "search_odd_numbers", Table: "numbers", PrimaryKey: "value",
//		Fields: pampa.TrackingFields{ /* seven column names */ },
//		Process: func(ctx context.Context, t *pampa.Task) error {
//			v, err := t.Int64("value")
//			t.Set("is_odd", v%2 != 0)
//			return err
//		},
//	})
//	client, _ := pampa.Open(ctx, c)
//	go client.NewDispatcher(pampa.DispatcherOptions{}).Run(ctx)
//	w, _ := client.NewWorker("local.1", pampa.WorkerOptions{})
//	_ = w.Run(ctx)
package pampa
