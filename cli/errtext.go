package cli

import (
	"errors"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// errorText is err's message as the CLI prints it. A PostgreSQL
// connection that failed on every attempt lists each attempt, and pgx
// tries each address twice when sslmode is unset (TLS, then plain): the
// same "connection refused" would be printed twice. Here each distinct
// cause is printed once; each names the address (host:port) it is about.
// pgx never puts the password in these messages.
func errorText(err error) string {
	msg := err.Error()
	var ce *pgconn.ConnectError
	if !errors.As(err, &ce) {
		return msg
	}
	multi, ok := ce.Unwrap().(interface{ Unwrap() []error })
	if !ok {
		return msg
	}
	var causes []string
	for _, e := range multi.Unwrap() {
		if text := e.Error(); !slices.Contains(causes, text) {
			causes = append(causes, text)
		}
	}
	full := ce.Error()
	prefix, _, _ := strings.Cut(full, "\n")
	joined := prefix + " " + strings.Join(causes, "; ")
	if len(causes) > 1 {
		joined = prefix + "\n\t" + strings.Join(causes, "\n\t")
	}
	return strings.Replace(msg, full, joined, 1)
}
