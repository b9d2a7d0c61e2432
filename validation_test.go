package pampa

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pampa-go/pampa/internal/store"
)

// Bad definitions give an error naming the job, the field and the value,
// and write nothing.

// wantConfigError checks that err is a ConfigError about job's field and
// value, and that its message says so.
func wantConfigError(t *testing.T, err error, job, field, value string) *ConfigError {
	t.Helper()
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v (%T), want a *ConfigError about %s", err, err, field)
	}
	if ce.Job != job || ce.Field != field || (value != "" && ce.Value != value) {
		t.Errorf("ConfigError{Job: %q, Field: %q, Value: %q}, want job %q, field %q, value %q", ce.Job, ce.Field, ce.Value, job, field, value)
	}
	msg := err.Error()
	for _, s := range []string{job, field, value} {
		if s != "" && !strings.Contains(msg, s) {
			t.Errorf("message %q does not name %q", msg, s)
		}
	}
	if ce.Reason == "" {
		t.Errorf("message %q gives no reason", msg)
	}
	return ce
}

func TestJobValidation(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name         string
		edit         func(j *Job)
		field, value string
	}{
		{"BadRegexp", func(j *Job) { j.FilterWorkerID = `local.(1` }, "filter_worker_id", `local.(1`},
		{"NegativeQueueSize", func(j *Job) { j.QueueSize = -1 }, "queue_size", "-1"},
		{"QueueSizeMaxUnderQueueSize", func(j *Job) { j.QueueSize, j.QueueSizeMax = 20, 19 }, "queue_size_max", "19"},
		{"NegativeQueueSizeMax", func(j *Job) { j.QueueSizeMax = -1 }, "queue_size_max", "-1"},
		{"NegativeMaxTryTimes", func(j *Job) { j.MaxTryTimes = -2 }, "max_try_times", "-2"},
		{"NegativeMaxPendingTasks", func(j *Job) { j.MaxPendingTasks = -3 }, "max_pending_tasks", "-3"},
		{"NegativeMaxAssignedWorkers", func(j *Job) { j.MaxAssignedWorkers = -1 }, "max_assigned_workers", "-1"},
		{"NegativeMaxJobDuration", func(j *Job) { j.MaxJobDuration = -time.Second }, "max_job_duration", "-1s"},
		{"NegativeRetryBackoff", func(j *Job) { j.RetryBackoff = -time.Second }, "retry_backoff", "-1s"},
		{"RetryBackoffMaxBelowBase", func(j *Job) { j.RetryBackoff, j.RetryBackoffMax = time.Minute, time.Second }, "retry_backoff_max", "1s"},
		{"RetryBackoffMaxWithoutBase", func(j *Job) { j.RetryBackoffMax = time.Minute }, "retry_backoff_max", "1m0s"},
		{"NegativeRetryBackoffMax", func(j *Job) { j.RetryBackoffMax = -time.Second }, "retry_backoff_max", "-1s"},
		{"RunAtIsTracking", func(j *Job) { j.RunAt = j.Fields.EndTime }, "field_run_at", "odd_checking_end_time"},
		{"RunAtIsCreatedAt", func(j *Job) { j.RunAt, j.CreatedAt = "t", "t" }, "field_created_at", "t"},
		{"NoTable", func(j *Job) { j.Table = "" }, "table", ""},
		{"EmptyTableAfterSchema", func(j *Job) { j.Table = "app." }, "table", "app."},
		{"UnclosedQuoteInTable", func(j *Job) { j.Table = `"numbers` }, "table", `"numbers`},
		{"ThreePartTable", func(j *Job) { j.Table = "a.b.c" }, "table", "a.b.c"},
		{"OverlongPrimaryKey", func(j *Job) { j.PrimaryKey = strings.Repeat("v", 256) }, "field_primary_key", strings.Repeat("v", 256)},
		{"OverlongTrackingColumn", func(j *Job) { j.Fields.ReservationID = strings.Repeat("i", 256) }, "field_id", strings.Repeat("i", 256)},
		{"MissingTrackingColumn", func(j *Job) { j.Fields.EndTime = "" }, "field_end_time", ""},
		{"TrackingColumnTwice", func(j *Job) { j.Fields.EndTime = j.Fields.StartTime }, "field_end_time", "odd_checking_start_time"},
		{"TrackingColumnIsKey", func(j *Job) { j.Fields.Success = "value" }, "field_success", "value"},
		{"CreatedAtIsTracking", func(j *Job) { j.CreatedAt = j.Fields.StartTime }, "field_created_at", "odd_checking_start_time"},
		{"CreatedAtIsKey", func(j *Job) { j.CreatedAt = "value" }, "field_created_at", "value"},
		{"OverlongCreatedAt", func(j *Job) { j.CreatedAt = strings.Repeat("c", 256) }, "field_created_at", strings.Repeat("c", 256)},
		{"GoAndSQLHook", func(j *Job) {
			j.Hooks.Occupied = func(context.Context, Querier, string) (int, error) { return 0, nil }
			j.Hooks.OccupiedSQL = "SELECT 0"
		}, "occupied_sql", "SELECT 0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			j := oddJob()
			c.edit(&j)
			var cl Cluster
			err := cl.AddJob(j)
			wantConfigError(t, err, "search_odd_numbers", c.field, c.value)
			if len(cl.Jobs()) != 0 {
				t.Error("a bad job was added")
			}
		})
	}
	t.Run("NoName", func(t *testing.T) {
		t.Parallel()
		j := oddJob()
		j.Name = ""
		var cl Cluster
		wantConfigError(t, cl.AddJob(j), "", "name", "")
	})
	t.Run("SameNameTwice", func(t *testing.T) {
		t.Parallel()
		var cl Cluster
		if err := cl.AddJob(oddJob()); err != nil {
			t.Fatal(err)
		}
		other := oddJob()
		other.Table = "other_numbers"
		wantConfigError(t, cl.AddJob(other), "search_odd_numbers", "name", "search_odd_numbers")
		if len(cl.Jobs()) != 1 || cl.Jobs()[0].Table != "numbers" {
			t.Error("the second job replaced or joined the first")
		}
	})
	t.Run("Defaults", func(t *testing.T) {
		t.Parallel()
		j := Job{Name: "j", Table: "t", PrimaryKey: "id", Fields: oddJob().Fields}.WithDefaults()
		if j.QueueSize != 5 || j.MaxJobDuration != 15*time.Minute || j.MaxTryTimes != 3 || j.FilterWorkerID != ".*" ||
			j.MaxPendingTasks != DefaultMaxPendingTasks || j.MaxAssignedWorkers != 0 {
			t.Errorf("defaults = %+v", j)
		}
		if err := j.Validate(); err != nil {
			t.Fatal(err)
		}
		if !j.AcceptsWorker("any.7") {
			t.Error("the default filter refuses a worker")
		}
	})
}

func TestDatabaseValidation(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		db    Database
		field string
	}{
		{Database{Driver: "mysql", URL: "x"}, "database.driver"},
		{Database{Driver: DriverPostgres}, "database.url"},
		{Database{Driver: DriverCockroach}, "database.url"},
	} {
		_, err := Open(context.Background(), &Cluster{Database: c.db})
		wantConfigError(t, err, "", c.field, "")
	}
}

// tablesOf lists which of Pampa's own tables exist, and the columns of
// `numbers`, over a connection of its own.
func tablesOf(t *testing.T, db Database) (pampaTables []string, numbersColumns []string) {
	t.Helper()
	cl, err := connect(context.Background(), &Cluster{Database: db})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, name := range []string{"pampa_workers", "pampa_leader"} {
		_, ok, err := cl.store.Dialect.Columns(context.Background(), cl.store.DB, store.Ident{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			pampaTables = append(pampaTables, name)
		}
	}
	cols, _, err := cl.store.Dialect.Columns(context.Background(), cl.store.DB, store.Ident{Name: "numbers"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cols {
		numbersColumns = append(numbersColumns, c.Name+" "+c.Type)
	}
	return pampaTables, numbersColumns
}

// wroteNothing checks that Pampa created none of its tables and left
// `numbers` with the columns it had.
func wroteNothing(t *testing.T, db Database, columnsBefore []string) {
	t.Helper()
	tables, cols := tablesOf(t, db)
	if len(tables) != 0 {
		t.Errorf("Pampa's tables %v were created although the definition is bad", tables)
	}
	if !slices.Equal(cols, columnsBefore) {
		t.Errorf("numbers' columns changed:\n before %v\n after  %v", columnsBefore, cols)
	}
}

// badCluster is a cluster over a database holding a bare `numbers` table.
func badCluster(t *testing.T, driver string, jobs ...Job) (*Cluster, []string) {
	t.Helper()
	c := &Cluster{Database: databaseFor(t, driver)}
	if err := c.AddNode(Node{Name: "local", Host: "127.0.0.1", MaxWorkers: 2}); err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		if err := c.AddJob(j); err != nil {
			t.Fatal(err)
		}
	}
	createNumbers(t, c.Database, 5)
	_, cols := tablesOf(t, c.Database)
	return c, cols
}

func TestOpenChecksTables(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		t.Run("MissingTable", func(t *testing.T) {
			j := oddJob()
			j.Table = "no_such_table"
			c, cols := badCluster(t, driver, j)
			_, err := Open(context.Background(), c)
			wantConfigError(t, err, "search_odd_numbers", "table", "no_such_table")
			wroteNothing(t, c.Database, cols)
		})
		t.Run("MissingPrimaryKey", func(t *testing.T) {
			j := oddJob()
			j.PrimaryKey = "id"
			c, cols := badCluster(t, driver, j)
			_, err := Open(context.Background(), c)
			wantConfigError(t, err, "search_odd_numbers", "field_primary_key", "id")
			wroteNothing(t, c.Database, cols)
		})
		t.Run("MissingTrackingColumns", func(t *testing.T) {
			c, cols := badCluster(t, driver, oddJob())
			_, err := Open(context.Background(), c)
			wantConfigError(t, err, "search_odd_numbers", "tracking columns", "")
			for _, s := range []string{"pampa setup", "field_id = odd_checking_reservation_id", "field_error_description"} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("message %q lacks %q", err, s)
				}
			}
			wroteNothing(t, c.Database, cols)
		})
		t.Run("OneTrackingColumnMissing", func(t *testing.T) {
			c, _ := badCluster(t, driver, oddJob())
			admin, err := connect(context.Background(), c)
			if err != nil {
				t.Fatal(err)
			}
			defer admin.Close()
			types := admin.store.Dialect.Types()
			kindType := map[ColumnKind]string{KindText: types.Text, KindTime: types.Time, KindInt: types.Int, KindBool: types.Bool}
			for _, f := range c.Jobs()[0].Fields.fields() {
				if f.option == "field_end_time" {
					continue
				}
				if _, err := admin.DB().Exec(`ALTER TABLE numbers ADD COLUMN ` + f.column + ` ` + kindType[f.kind]); err != nil {
					t.Fatal(err)
				}
			}
			_, cols := tablesOf(t, c.Database)
			_, err = Open(context.Background(), c)
			wantConfigError(t, err, "search_odd_numbers", "tracking columns", "field_end_time = odd_checking_end_time")
			wroteNothing(t, c.Database, cols)
		})
		t.Run("TrackingColumnWrongType", func(t *testing.T) {
			c, _ := badCluster(t, driver, oddJob())
			admin, err := connect(context.Background(), c)
			if err != nil {
				t.Fatal(err)
			}
			defer admin.Close()
			if _, err := admin.DB().Exec(`ALTER TABLE numbers ADD COLUMN odd_checking_reservation_times text`); err != nil {
				t.Fatal(err)
			}
			_, cols := tablesOf(t, c.Database)
			_, err = Open(context.Background(), c)
			ce := wantConfigError(t, err, "search_odd_numbers", "field_times", "odd_checking_reservation_times")
			if !strings.Contains(ce.Reason, "text") || !strings.Contains(ce.Reason, "integer") {
				t.Errorf("reason %q should give the column's type and the one wanted", ce.Reason)
			}
			wroteNothing(t, c.Database, cols)
			// Setup will not paper over it either.
			_, err = Setup(context.Background(), c, SetupOptions{})
			wantConfigError(t, err, "search_odd_numbers", "field_times", "odd_checking_reservation_times")
			wroteNothing(t, c.Database, cols)
		})
	})
	t.Run("BooleanAsTextOnPostgres", func(t *testing.T) {
		t.Parallel()
		c, _ := badCluster(t, DriverPostgres, oddJob())
		admin, err := connect(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close()
		if _, err := admin.DB().Exec(`ALTER TABLE numbers ADD COLUMN odd_checking_success text`); err != nil {
			t.Fatal(err)
		}
		if _, err := Setup(context.Background(), c, SetupOptions{}); err == nil {
			t.Fatal("setup accepted a text column as field_success")
		}
		_, err = Open(context.Background(), c)
		wantConfigError(t, err, "search_odd_numbers", "field_success", "odd_checking_success")
	})
}

func TestNewWorkerValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, DriverSQLite, 3)
	for _, c := range []struct {
		id   string
		want []string
	}{
		{"nowhere.1", []string{"nowhere.1", `no node named "nowhere"`}},
		{"local.9", []string{"local.9", "max_workers"}},
		{"local.0", []string{"local.0"}},
		{"local", []string{"local"}},
		{"", nil},
	} {
		w, err := e.client.NewWorker(c.id, fastWorker())
		if err == nil || w != nil {
			t.Errorf("NewWorker(%q) = %v, %v; want an error", c.id, w, err)
			continue
		}
		for _, s := range c.want {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("NewWorker(%q): %q lacks %q", c.id, err, s)
			}
		}
	}
	if _, err := e.client.NewWorker("local.1", WorkerOptions{Concurrency: -1}); err == nil || !strings.Contains(err.Error(), "concurrency") {
		t.Errorf("negative concurrency: err = %v", err)
	}
	if n := e.count(`SELECT COUNT(*) FROM pampa_workers`); n != 0 {
		t.Errorf("%d workers registered by failed NewWorker calls", n)
	}
}

func TestWorkerWithNoRunnableJob(t *testing.T) {
	t.Parallel()
	noFunc := oddJob()
	noFunc.Process = nil
	onlyFirsts := oddJob()
	onlyFirsts.Name = "firsts"
	onlyFirsts.FilterWorkerID = `\.1$`
	c := &Cluster{Database: databaseFor(t, DriverSQLite)}
	if err := c.AddNode(Node{Name: "local", Host: "127.0.0.1", MaxWorkers: 2}); err != nil {
		t.Fatal(err)
	}
	for _, j := range []Job{noFunc, onlyFirsts} {
		if err := c.AddJob(j); err != nil {
			t.Fatal(err)
		}
	}
	createNumbers(t, c.Database, 3)
	if _, err := Setup(context.Background(), c, SetupOptions{}); err != nil {
		t.Fatal(err)
	}
	cl, err := Open(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	_, err = cl.NewWorker("local.2", fastWorker())
	if err == nil {
		t.Fatal("a worker that can run no job was made")
	}
	for _, s := range []string{"local.2", "search_odd_numbers", "no processing function", "firsts", "filter_worker_id"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("%q lacks %q", err, s)
		}
	}
	w, err := cl.NewWorker("local.1", fastWorker())
	if err != nil {
		t.Fatalf("local.1 can run firsts: %v", err)
	}
	if len(w.jobs) != 1 || w.jobs[0].Name != "firsts" {
		t.Errorf("local.1 runs %d jobs, want only firsts", len(w.jobs))
	}
}

// closedPort returns a local TCP port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

func TestOpenUnreachableDatabase(t *testing.T) {
	t.Parallel()
	const password = "s3cr3t-Pa55w0rd"
	port := closedPort(t)
	for _, db := range []Database{
		{Driver: DriverPostgres, URL: fmt.Sprintf("postgres://pampa:%s@127.0.0.1:%d/jobs?sslmode=disable&connect_timeout=5", password, port)},
		{Driver: DriverPostgres, URL: fmt.Sprintf("host=127.0.0.1 port=%d user=pampa password=%s dbname=jobs connect_timeout=5", port, password)},
		{Driver: DriverCockroach, URL: fmt.Sprintf("postgresql://pampa:%s@127.0.0.1:%d/jobs?sslmode=disable", password, port)},
		{Driver: DriverPostgres, URL: fmt.Sprintf("postgres://pampa:%s@127.0.0.1:%d/jobs?sslmode=disable&bad_percent=%%zz", password, port)},
		{Driver: DriverSQLite, URL: "/no/such/directory/pampa.db"},
	} {
		t.Run(db.Driver, func(t *testing.T) {
			c := &Cluster{Database: db}
			if err := c.AddJob(oddJob()); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			var cl *Client
			var err error
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Fatalf("Open panicked: %v", p)
					}
				}()
				cl, err = Open(context.Background(), c)
			}()
			if err == nil {
				cl.Close()
				t.Fatal("Open succeeded against nothing")
			}
			if strings.Contains(err.Error(), password) {
				t.Errorf("the error shows the password: %v", err)
			}
			if time.Since(start) > 15*time.Second {
				t.Errorf("Open took %s to fail", time.Since(start))
			}
			if _, err := Setup(context.Background(), c, SetupOptions{}); err == nil || strings.Contains(err.Error(), password) {
				t.Errorf("Setup: %v", err)
			}
		})
	}
}

func TestSetup(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, driver string) {
		t.Run("MissingTable", func(t *testing.T) {
			j := oddJob()
			j.Table = "no_such_table"
			c, cols := badCluster(t, driver, j)
			_, err := Setup(context.Background(), c, SetupOptions{})
			wantConfigError(t, err, "search_odd_numbers", "table", "no_such_table")
			wroteNothing(t, c.Database, cols)
		})
		t.Run("MissingKey", func(t *testing.T) {
			j := oddJob()
			j.PrimaryKey = "id"
			c, cols := badCluster(t, driver, j)
			_, err := Setup(context.Background(), c, SetupOptions{})
			wantConfigError(t, err, "search_odd_numbers", "field_primary_key", "id")
			wroteNothing(t, c.Database, cols)
		})
		t.Run("OneBadJobStopsAll", func(t *testing.T) {
			bad := submitOddJob(isOdd)
			bad.Table = "no_such_table"
			c, cols := badCluster(t, driver, oddJob(), bad)
			_, err := Setup(context.Background(), c, SetupOptions{})
			wantConfigError(t, err, "submit_odd_numbers", "table", "no_such_table")
			wroteNothing(t, c.Database, cols)
		})
		t.Run("ColumnSharedByTwoJobs", func(t *testing.T) {
			// Two jobs on one table that share a column (here the error
			// description): it is added once.
			second := submitOddJob(isOdd)
			second.Fields.ErrorDescription = "odd_checking_error_description"
			c, _ := badCluster(t, driver, oddJob(), second)
			changes, err := Setup(context.Background(), c, SetupOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var columns int
			for _, ch := range changes {
				if strings.HasPrefix(ch.What, "added column") {
					columns++
				}
			}
			if columns != 13 {
				t.Errorf("%d columns added, want 13: %v", columns, changes)
			}
			cl, err := Open(context.Background(), c)
			if err != nil {
				t.Fatal(err)
			}
			cl.Close()
		})
		t.Run("UnknownJob", func(t *testing.T) {
			c, cols := badCluster(t, driver, oddJob())
			if _, err := Setup(context.Background(), c, SetupOptions{Jobs: []string{"nope"}}); !errors.Is(err, ErrNotFound) {
				t.Errorf("err = %v, want ErrNotFound", err)
			}
			wroteNothing(t, c.Database, cols)
		})
		t.Run("Idempotent", func(t *testing.T) {
			c, _ := badCluster(t, driver, oddJob(), submitOddJob(isOdd))
			changes, err := Setup(context.Background(), c, SetupOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var columns, indexes int
			for _, ch := range changes {
				switch {
				case strings.HasPrefix(ch.What, "added column"):
					columns++
				case strings.HasPrefix(ch.What, "created index"):
					indexes++
				default:
					t.Errorf("unexpected change %s", ch)
				}
			}
			if columns != 14 || indexes != 8 {
				t.Errorf("first setup: %d columns and %d indexes, want 14 and 8: %v", columns, indexes, changes)
			}
			again, err := Setup(context.Background(), c, SetupOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(again) != 0 {
				t.Errorf("second setup changed %v, want nothing", again)
			}
			tables, cols := tablesOf(t, c.Database)
			if len(tables) != 2 {
				t.Errorf("Pampa's tables after setup: %v", tables)
			}
			types := map[string]string{}
			for _, col := range cols {
				name, typ, _ := strings.Cut(col, " ")
				types[name] = typ
			}
			want := map[ColumnKind]string{KindText: "text", KindTime: "timestamp", KindInt: "integer", KindBool: "boolean"}
			if driver == DriverPostgres {
				want[KindTime] = "timestamp with time zone"
			}
			for _, j := range c.Jobs() {
				for _, f := range j.Fields.fields() {
					if types[f.column] != want[f.kind] {
						t.Errorf("job %s: %s %s has type %q, want %q", j.Name, f.option, f.column, types[f.column], want[f.kind])
					}
				}
			}
			// Only the named job.
			third := oddJob()
			third.Name = "third"
			third.Fields.ReservationID = "third_reservation_id"
			if err := c.AddJob(third); err != nil {
				t.Fatal(err)
			}
			changes, err = Setup(context.Background(), c, SetupOptions{Jobs: []string{"third"}})
			if err != nil {
				t.Fatal(err)
			}
			var added []string
			for _, ch := range changes {
				if ch.Job != "third" {
					t.Errorf("setup of job third changed job %s", ch.Job)
				}
				if strings.HasPrefix(ch.What, "added column") {
					added = append(added, ch.What)
				}
			}
			if len(added) != 1 || !strings.Contains(strings.ToLower(added[0]), "third_reservation_id text") {
				t.Errorf("setup of third added %v, want only third_reservation_id", added)
			}
			cl, err := Open(context.Background(), c)
			if err != nil {
				t.Fatalf("Open after setup: %v", err)
			}
			cl.Close()
		})
	})
}
