package pampa

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/pampa-go/pampa/internal/config"
	"github.com/pampa-go/pampa/internal/handler/execcall"
)

// ExecSpec runs a job's processing function as a command, written in any
// language: each try hands it the task as one line of JSON on stdin, and
// its exit status and stdout are the outcome (docs/handlers.md). The
// stock `pampa` binary runs such jobs with no Go code. In a config file:
// the job keys exec, shell, dir, env and mode.
type ExecSpec struct {
	// Command is the program and its arguments, run as they are, without
	// a shell: {"python3", "odd.py"}. A program named without a slash is
	// looked up in PATH; a relative path with one is taken from Dir. The
	// worker checks that the program exists when it starts.
	Command []string
	// Shell runs the command with /bin/sh -c: Command is then one string,
	// which may hold pipes, redirections and $VARIABLES. Default false:
	// no shell unless asked, so that nothing in a task reaches one.
	Shell bool
	// Dir is the command's working directory. In a config file it
	// defaults to the file's directory, and a relative dir is taken from
	// there; set in Go, "" is the worker's working directory.
	Dir string
	// Env adds variables to the environment the command inherits from
	// the worker; in a config file, values may use ${NAME} as
	// database.url does.
	Env map[string]string
	// Mode is ExecOnce (default: a process per try) or ExecPersistent
	// (processes kept running, one try after another, as JSON lines).
	Mode ExecMode
}

// ExecMode says whether a command runs once per try or keeps running.
type ExecMode string

// The modes of ExecSpec.
const (
	ExecOnce       ExecMode = "once"
	ExecPersistent ExecMode = "persistent"
)

// ExecFinalStatus is the exit status with which a command, in once mode,
// fails its task for good (see [ErrFinal]): 100, none of the statuses
// that tools and shells already give a meaning to.
const ExecFinalStatus = execcall.FinalStatus

// commandText is the command as it reads in an error message.
func (x *ExecSpec) commandText() string { return strings.Join(x.Command, " ") }

// validate checks the spec; bad makes the job's error.
func (x *ExecSpec) validate(bad func(field string, value any, why string) error) error {
	switch {
	case len(x.Command) == 0 || x.Command[0] == "":
		return bad("exec", x.commandText(), "name the program to run, as a list: [python3, odd.py]")
	case x.Shell && len(x.Command) != 1:
		return bad("exec", x.commandText(), "with shell: true, the command is one string for /bin/sh -c")
	}
	for _, arg := range x.Command {
		if strings.ContainsRune(arg, 0) {
			return bad("exec", x.commandText(), "holds a NUL byte")
		}
	}
	switch x.Mode {
	case "", ExecOnce, ExecPersistent:
	default:
		return bad("mode", x.Mode, "must be once or persistent")
	}
	for _, name := range slices.Sorted(maps.Keys(x.Env)) {
		if !config.IsEnvName(name) {
			return bad("env", name, "not an environment variable name; use letters, digits and '_'")
		}
		if strings.ContainsRune(x.Env[name], 0) {
			return bad("env."+name, x.Env[name], "holds a NUL byte")
		}
	}
	return nil
}

// newExecCaller makes a worker's caller of an exec job: it finds the
// program now, so that a worker without it does not start, and fixes the
// environment the commands get.
func newExecCaller(j *Job, opts WorkerOptions) (caller, error) {
	x := j.Exec
	args := x.Command
	if x.Shell {
		args = []string{"/bin/sh", "-c", x.Command[0]}
	}
	if x.Dir != "" {
		if fi, err := os.Stat(x.Dir); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("job %q: dir %s: not a directory (%v)", j.Name, x.Dir, err)
		}
	}
	prog, err := execProgram(args[0], x.Dir)
	if err != nil {
		return nil, fmt.Errorf("job %q: exec %s: %w", j.Name, x.commandText(), err)
	}
	env := os.Environ()
	for _, name := range slices.Sorted(maps.Keys(x.Env)) {
		env = append(env, name+"="+x.Env[name]) // the last of a name wins
	}
	return execcall.New(execcall.Options{
		Args: append([]string{prog}, args[1:]...), Dir: x.Dir, Env: env,
		Persistent: x.Mode == ExecPersistent,
		// Half the overrun grace: the process is killed and reaped
		// before the executor would give up on the try.
		KillGrace: opts.OverrunGrace / 2,
		Log:       opts.Logger.With("job", j.Name),
	}), nil
}

// execProgram finds the program: a name without a slash in PATH, a
// relative path from dir. The result is absolute, as a relative one
// would be taken from the command's working directory.
func execProgram(name, dir string) (string, error) {
	if !strings.Contains(name, "/") {
		path, err := exec.LookPath(name)
		if err != nil {
			return "", fmt.Errorf("program %q not found in PATH", name)
		}
		return filepath.Abs(path)
	}
	path := name
	if !filepath.IsAbs(path) {
		path = filepath.Join(dir, path)
	}
	path, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return "", fmt.Errorf("program %s: %w", path, err)
	case fi.IsDir() || fi.Mode()&0o111 == 0:
		return "", fmt.Errorf("program %s is not an executable file (chmod +x?)", path)
	}
	return path, nil
}
