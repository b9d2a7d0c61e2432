package cli

import (
	"errors"
	"flag"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// argsOriginalKeys are the original's command-line keys.
var argsOriginalKeys = []string{"delay", "id", "db", "log", "config"}

func argsKnown(names ...string) map[string]bool {
	m := map[string]bool{}
	for _, n := range names {
		m[n] = true
	}
	return m
}

func argsHome() (string, error) { return "/home/test", nil }

func TestNormalizeArgs(t *testing.T) {
	t.Parallel()

	worker := argsKnown(append(argsOriginalKeys, "workers")...)
	for _, tt := range []struct {
		name    string
		in      []string
		known   map[string]bool // worker when nil
		want    []string
		wantErr string
	}{
		{name: "DelaySeconds", in: []string{"delay=30"}, want: []string{"--delay=30s"}},
		{name: "DelayDecimal", in: []string{"delay=1.5"}, want: []string{"--delay=1.5s"}},
		{name: "DelayLeadingDot", in: []string{"delay=.5"}, want: []string{"--delay=.5s"}},
		{name: "DelayZero", in: []string{"delay=0"}, want: []string{"--delay=0s"}},
		{name: "DelayDuration", in: []string{"delay=30s"}, want: []string{"--delay=30s"}},
		{name: "DelayMinutes", in: []string{"delay=2m"}, want: []string{"--delay=2m"}},
		{name: "DelayNegative", in: []string{"delay=-5s"}, wantErr: `argument "delay=-5s": delay must not be negative`},
		{name: "DelayText", in: []string{"delay=soon"}, wantErr: `argument "delay=soon": delay must be a number of seconds`},
		{name: "DelayEmpty", in: []string{"delay="}, wantErr: `argument "delay="`},
		{name: "DelayExponent", in: []string{"delay=1e3"}, wantErr: `argument "delay=1e3"`},
		{name: "DelayTwoDots", in: []string{"delay=1.2.3"}, wantErr: `argument "delay=1.2.3"`},
		{name: "DelayOverflow", in: []string{"delay=99999999999"}, wantErr: `argument "delay=99999999999"`},
		{name: "ID", in: []string{"id=local.1"}, want: []string{"--id=local.1"}},
		{name: "IDEmpty", in: []string{"id="}, wantErr: `argument "id=": id needs a worker id`},
		{name: "DBCockroach", in: []string{"db=crdb"}, want: []string{"--db=crdb"}},
		{name: "DBPostgres", in: []string{"db=postgres"}, want: []string{"--db=postgres"}},
		{name: "DBSQLite", in: []string{"db=sqlite"}, want: []string{"--db=sqlite"}},
		{name: "DBUnknown", in: []string{"db=mysql"}, wantErr: `argument "db=mysql": db must be postgres, crdb or sqlite`},
		{name: "LogNo", in: []string{"log=no"}, want: []string{"--log=false"}},
		{name: "LogYes", in: []string{"log=yes"}, want: []string{"--log=true"}},
		{name: "LogFalse", in: []string{"log=false"}, want: []string{"--log=false"}},
		{name: "LogTrue", in: []string{"log=true"}, want: []string{"--log=true"}},
		{name: "LogUpperCase", in: []string{"log=NO"}, want: []string{"--log=false"}},
		{name: "LogMaybe", in: []string{"log=maybe"}, wantErr: `argument "log=maybe": log must be yes, no, true or false`},
		{name: "ConfigHome", in: []string{"config=~/foo/config.yaml"}, want: []string{"--config=/home/test/foo/config.yaml"}},
		{name: "ConfigHomeAlone", in: []string{"config=~"}, want: []string{"--config=/home/test"}},
		{name: "ConfigAbsolute", in: []string{"config=/etc/pampa.yaml"}, want: []string{"--config=/etc/pampa.yaml"}},
		{name: "ConfigRelative", in: []string{"config=pampa.yaml"}, want: []string{"--config=pampa.yaml"}},
		{name: "ConfigOtherUser", in: []string{"config=~bob/c.yaml"}, want: []string{"--config=~bob/c.yaml"}},
		{name: "ConfigEmpty", in: []string{"config="}, wantErr: `argument "config=": config needs a file path`},
		{name: "OtherKnownKey", in: []string{"workers=3"}, want: []string{"--workers=3"}},
		{name: "OtherKnownKeyEmptyValue", in: []string{"workers="}, want: []string{"--workers="}},
		{name: "ValueWithEquals", in: []string{"id=a=b"}, want: []string{"--id=a=b"}},
		{
			name:    "UnknownKey",
			in:      []string{"foo=1"},
			known:   argsKnown(argsOriginalKeys...),
			wantErr: `unknown argument "foo=1": expected one of config, db, delay, id, log`,
		},
		{
			name:    "KeyOfAnotherCommand",
			in:      []string{"id=local.1"},
			known:   argsKnown("delay", "db", "log", "config"),
			wantErr: `unknown argument "id=local.1": expected one of config, db, delay, log`,
		},
		{
			name:    "KnownFalseIsUnknown",
			in:      []string{"delay=30"},
			known:   map[string]bool{"delay": false, "id": true},
			wantErr: `unknown argument "delay=30": expected one of id`,
		},
		{
			name:    "NothingKnown",
			in:      []string{"delay=30"},
			known:   map[string]bool{},
			wantErr: `unknown argument "delay=30": this command takes no key=value arguments`,
		},
		{name: "CaseMatters", in: []string{"Delay=30"}, wantErr: `unknown argument "Delay=30"`},
		{
			name: "FlagsLeftAlone",
			in:   []string{"--delay=30", "-id", "local.1", "--log=no", "-v"},
			want: []string{"--delay=30", "-id", "local.1", "--log=no", "-v"},
		},
		{
			name: "ValueOfFlagWithoutEquals",
			in:   []string{"--config", "dir/a=b.yaml", "delay=5"},
			want: []string{"--config", "dir/a=b.yaml", "--delay=5s"},
		},
		{
			name: "KnownKeyAfterFlagWithoutEquals",
			in:   []string{"--log", "delay=5"},
			want: []string{"--log", "--delay=5s"},
		},
		{
			name:    "UnknownKeyAfterUnknownFlag",
			in:      []string{"--verbose", "foo=1"},
			wantErr: `unknown argument "foo=1"`,
		},
		{
			name: "PositionalLeftAlone",
			in:   []string{"worker", "postgres://u@h/db?sslmode=disable", "=5", "a b=c", "1=2"},
			want: []string{"worker", "postgres://u@h/db?sslmode=disable", "=5", "a b=c", "1=2"},
		},
		{
			name: "AfterDoubleDash",
			in:   []string{"delay=30", "--", "foo=1", "delay=30", "log=maybe", "--"},
			want: []string{"--delay=30s", "--", "foo=1", "delay=30", "log=maybe", "--"},
		},
		{
			name: "OriginalCommandLine",
			in:   []string{"worker", "id=local.1", "delay=30", "config=~/foo/config.yaml", "db=crdb", "log=no"},
			want: []string{"worker", "--id=local.1", "--delay=30s", "--config=/home/test/foo/config.yaml", "--db=crdb", "--log=false"},
		},
		{name: "Empty", in: nil, want: []string{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			known := tt.known
			if known == nil {
				known = worker
			}
			got, err := normalizeArgs(tt.in, known, argsHome)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q (output %q)", err, tt.wantErr, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("NormalizeArgs(%q): %v", tt.in, err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("NormalizeArgs(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestNormalizeArgsHomeError(t *testing.T) {
	t.Parallel()

	noHome := func() (string, error) { return "", errors.New("$HOME is not defined") }
	known := argsKnown(argsOriginalKeys...)
	if _, err := normalizeArgs([]string{"config=~/c.yaml"}, known, noHome); err == nil || !strings.Contains(err.Error(), "$HOME is not defined") {
		t.Errorf("error = %v, want the home directory's error", err)
	}
	// The home directory is only needed for a leading ~.
	if got, err := normalizeArgs([]string{"config=/c.yaml"}, known, noHome); err != nil || got[0] != "--config=/c.yaml" {
		t.Errorf("got %q, %v", got, err)
	}
}

// The output must be what Go's flag package understands.
func TestNormalizeArgsFlagSet(t *testing.T) {
	t.Parallel()

	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	delay := fs.Duration("delay", 0, "")
	id := fs.String("id", "", "")
	db := fs.String("db", "", "")
	logOn := fs.Bool("log", true, "")
	config := fs.String("config", "", "")

	known := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) { known[f.Name] = true })

	args, err := normalizeArgs([]string{"id=local.1", "delay=1.5", "db=crdb", "log=no", "config=~/c.yaml", "--", "rest=1"}, known, argsHome)
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse(args); err != nil {
		t.Fatalf("flag parse of %q: %v", args, err)
	}
	if *delay != 1500*time.Millisecond || *id != "local.1" || *db != "crdb" || *logOn || *config != "/home/test/c.yaml" {
		t.Errorf("parsed delay=%v id=%q db=%q log=%v config=%q", *delay, *id, *db, *logOn, *config)
	}
	if got := fs.Args(); !slices.Equal(got, []string{"rest=1"}) {
		t.Errorf("positional args = %q", got)
	}
}

func FuzzNormalizeArgs(f *testing.F) {
	f.Add("worker\nid=local.1\ndelay=30\nlog=no\nconfig=~/c.yaml\ndb=crdb", "workers", true)
	f.Add("delay=1.5\n--\nfoo=1", "", true)
	f.Add("--config\na=b\nfoo=1", "config", false)
	f.Add("x=1\n-x\ny=2", "x,y", false)
	f.Add("log=maybe\ndelay=-1", "", true)

	f.Fuzz(func(t *testing.T, joined, extra string, original bool) {
		in := strings.Split(joined, "\n")
		known := map[string]bool{}
		for _, k := range strings.Split(extra, ",") {
			known[k] = true
		}
		if original {
			for _, k := range argsOriginalKeys {
				known[k] = true
			}
		}
		home := func() (string, error) { return "/home/fuzz", nil }

		out, err := normalizeArgs(in, known, home)
		if err != nil {
			named := false
			for _, arg := range in {
				named = named || strings.Contains(err.Error(), strconv.Quote(arg))
			}
			if !named {
				t.Errorf("error %q names no argument", err)
			}
			return
		}
		if len(out) != len(in) {
			t.Fatalf("%d arguments became %d: %q → %q", len(in), len(out), in, out)
		}
		rest := false
		for i, o := range out {
			arg := in[i]
			if rest || o == arg {
				rest = rest || arg == "--"
				continue
			}
			key, value, ok := strings.Cut(arg, "=")
			if !ok || !known[key] || !strings.HasPrefix(o, "--"+key+"=") {
				t.Fatalf("output %q does not come from input %q", o, arg)
			}
			switch got := strings.TrimPrefix(o, "--"+key+"="); key {
			case "delay":
				if got != value && got != value+"s" {
					t.Errorf("delay %q became %q", value, got)
				}
			case "log":
				if got != "true" && got != "false" {
					t.Errorf("log %q became %q", value, got)
				}
			case "config":
				if got != value && got != "/home/fuzz"+value[1:] {
					t.Errorf("config %q became %q", value, got)
				}
			default:
				if got != value {
					t.Errorf("%s %q became %q", key, value, got)
				}
			}
		}
	})
}
