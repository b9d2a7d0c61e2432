package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// NormalizeArgs rewrites the original's key=value arguments as Go flags, so
// that "worker id=local.1 delay=30 log=no" and
// "worker --id=local.1 --delay=30s --log=false" mean the same.
//
// known holds the flag names the command defines (names mapped to false
// count as absent). A key=value argument whose key is known becomes
// --key=value; the original's own keys get their values translated:
//
//	delay=30        --delay=30s     a bare number means seconds; 1.5 is 1.5s;
//	                                a Go duration (30s, 2m) is kept
//	id=local.1      --id=local.1
//	db=crdb         --db=crdb       postgres, crdb or sqlite
//	log=no          --log=false     yes, no, true or false
//	config=~/c.yaml --config=/home/me/c.yaml   a leading ~ is the home directory
//
// A key=value argument whose key is not known is an error naming it. Left
// alone are: arguments starting with "-"; arguments that are not key=value
// (a key is a letter followed by letters, digits, '-' and '_'), such as
// command names or URLs; the value following a known flag written without
// "=" (as in "--config path"), unless that value's key is itself known; and
// everything after a literal "--".
func NormalizeArgs(args []string, known map[string]bool) ([]string, error) {
	return normalizeArgs(args, known, os.UserHomeDir)
}

func normalizeArgs(args []string, known map[string]bool, home func() (string, error)) ([]string, error) {
	out := make([]string, 0, len(args))
	mayBeFlagValue := false
	for i, arg := range args {
		if arg == "--" {
			return append(out, args[i:]...), nil
		}
		afterFlag := mayBeFlagValue
		mayBeFlagValue = false
		if strings.HasPrefix(arg, "-") {
			name := strings.TrimLeft(arg, "-")
			mayBeFlagValue = !strings.Contains(name, "=") && known[name]
			out = append(out, arg)
			continue
		}
		key, value, ok := splitKeyValue(arg)
		if !ok || (afterFlag && !known[key]) {
			out = append(out, arg)
			continue
		}
		if !known[key] {
			return nil, unknownArgument(arg, known)
		}
		value, err := translateValue(key, value, home)
		if err != nil {
			return nil, fmt.Errorf("argument %q: %w", arg, err)
		}
		out = append(out, "--"+key+"="+value)
	}
	return out, nil
}

// splitKeyValue splits "key=value" where key looks like a flag name.
func splitKeyValue(arg string) (key, value string, ok bool) {
	key, value, ok = strings.Cut(arg, "=")
	if !ok || key == "" {
		return "", "", false
	}
	for i, r := range key {
		letter := ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z')
		if !letter && (i == 0 || !(r == '-' || r == '_' || ('0' <= r && r <= '9'))) {
			return "", "", false
		}
	}
	return key, value, true
}

func unknownArgument(arg string, known map[string]bool) error {
	var names []string
	for name, ok := range known {
		if ok {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return fmt.Errorf("unknown argument %q: this command takes no key=value arguments", arg)
	}
	slices.Sort(names)
	return fmt.Errorf("unknown argument %q: expected one of %s", arg, strings.Join(names, ", "))
}

// translateValue turns the value of one of the original's keys into what
// the Go flag expects; other keys' values pass unchanged.
func translateValue(key, value string, home func() (string, error)) (string, error) {
	switch key {
	case "delay":
		return translateDelay(value)
	case "id":
		if value == "" {
			return "", errors.New("id needs a worker id, such as local.1")
		}
	case "db":
		switch value {
		case "postgres", "crdb", "sqlite":
		default:
			return "", errors.New("db must be postgres, crdb or sqlite")
		}
	case "log":
		switch strings.ToLower(value) {
		case "yes", "true":
			return "true", nil
		case "no", "false":
			return "false", nil
		}
		return "", errors.New("log must be yes, no, true or false")
	case "config":
		return expandHome(value, home)
	}
	return value, nil
}

// translateDelay accepts seconds ("30", "1.5") or a Go duration ("30s").
func translateDelay(v string) (string, error) {
	if isDecimal(v) {
		v += "s"
	}
	d, err := time.ParseDuration(v)
	switch {
	case err != nil:
		return "", errors.New("delay must be a number of seconds (30, 1.5) or a duration (30s, 2m)")
	case d < 0:
		return "", errors.New("delay must not be negative")
	}
	return v, nil
}

// isDecimal reports whether s is digits with at most one '.'.
func isDecimal(s string) bool {
	digits, dots := 0, 0
	for _, r := range s {
		switch {
		case '0' <= r && r <= '9':
			digits++
		case r == '.':
			dots++
		default:
			return false
		}
	}
	return digits > 0 && dots <= 1
}

// expandHome replaces a leading "~" (alone or before a path separator)
// with the home directory. "~user" forms are left as they are.
func expandHome(path string, home func() (string, error)) (string, error) {
	if path == "" {
		return "", errors.New("config needs a file path")
	}
	if path != "~" && !strings.HasPrefix(path, "~/") && !strings.HasPrefix(path, "~"+string(filepath.Separator)) {
		return path, nil
	}
	dir, err := home()
	if err != nil {
		return "", fmt.Errorf("expand ~: %w", err)
	}
	if dir == "" {
		return "", errors.New("expand ~: the home directory is not known")
	}
	return dir + path[1:], nil
}
