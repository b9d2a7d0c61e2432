package pampa

import "testing"

// TestSignalKey: the key that names a server database's signals directory
// leaves the password out, whatever form the connection string takes.
func TestSignalKey(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ in, want string }{
		{"postgres://pampa:secret@db:26257/jobs?sslmode=disable", "postgres://pampa@db:26257/jobs?sslmode=disable"},
		{"postgresql://pampa@db/jobs", "postgresql://pampa@db/jobs"},
		{"postgres://db/jobs", "postgres://db/jobs"},
		{"host=db user=pampa password=secret dbname=jobs", "host=db user=pampa  dbname=jobs"},
		{"host=db password='se cret' dbname=jobs", "host=db  dbname=jobs"},
	} {
		if got := signalKey(c.in); got != c.want {
			t.Errorf("signalKey(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
