package nodes

import (
	"errors"
	"strings"
)

// Remote commands travel over SSH as one string, which the SSH user's login
// shell parses. Every argument is quoted here, so the shell sees each one as
// a single word with no expansion of any kind: values never become code.

// Quote returns s as one POSIX shell word. Words made only of characters no
// shell treats specially are left bare; everything else is put in single
// quotes, inside which nothing is special; a single quote inside becomes
//
//	'\''
//
// which closes the quotes, adds an escaped quote and opens them again.
func Quote(s string) string {
	if s == "" {
		return "''"
	}
	if isBare(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// isBare reports whether s needs no quoting: it is made of letters, digits
// and punctuation that no POSIX shell gives a meaning to anywhere in a word.
// "=" is not among them (a first word with "=" is an assignment), nor "~"
// (home expansion) nor "#" (a comment at a word's start).
func isBare(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-' || c == '_' || c == '.' || c == '/' || c == ',' || c == ':' || c == '@' || c == '+':
		default:
			return false
		}
	}
	return true
}

// errNUL is returned for an argument holding a NUL byte, which no command
// line can carry.
var errNUL = errors.New("a command argument holds a NUL byte")

// Command joins argv into a command line for the remote shell, each
// argument quoted by [Quote]. The first word is the program, looked up in
// the remote PATH unless it is a path.
func Command(argv ...string) (string, error) {
	if len(argv) == 0 {
		return "", errors.New("empty command")
	}
	words := make([]string, len(argv))
	for i, a := range argv {
		if strings.IndexByte(a, 0) >= 0 {
			return "", errNUL
		}
		words[i] = Quote(a)
	}
	return strings.Join(words, " "), nil
}
