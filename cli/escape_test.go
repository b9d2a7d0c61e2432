package cli

import (
	"bytes"
	"strings"
	"testing"
)

// TestEscapingWriterSplitRune: a character cut between two writes comes
// out whole, not as two escaped bytes.
func TestEscapingWriterSplitRune(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	w := newEscapingWriter(&b)
	s := "é\u009b漢"
	for i := range len(s) {
		w.Write([]byte{s[i]})
	}
	if got, want := b.String(), `é\u009b漢`; got != want {
		t.Errorf("byte by byte: %q, want %q", got, want)
	}
}

// TestFailedEscapesControls: `pampa failed` over a real SQLite database
// whose error column holds terminal escape sequences prints them escaped;
// --json keeps them exact (JSON-escaped).
func TestFailedEscapesControls(t *testing.T) {
	t.Parallel()
	config, client := setUpSQLite(t)
	const evil = "\x1b[31mred\x1b]0;title\x07"
	_, err := client.DB().Exec(`UPDATE numbers SET rid = 'local.1', rtime = CURRENT_TIMESTAMP, rtimes = 3,
		started = CURRENT_TIMESTAMP, ended = CURRENT_TIMESTAMP, ok = false, why = ? WHERE value = 2`, evil)
	client.Close()
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runCLI(t, nil, "failed", "--config", config, "--job", "search_odd_numbers")
	if code != 0 || !strings.Contains(out, `\x1b[31mred\x1b]0;title\x07`) {
		t.Fatalf("failed: exit %d\n%q\n%s", code, out, errOut)
	}
	if strings.ContainsAny(out+errOut, "\x1b\x07") {
		t.Errorf("failed printed control characters: %q", out)
	}
	out, _, code = runCLI(t, nil, "failed", "--config", config, "--job", "search_odd_numbers", "--json")
	if code != 0 || !strings.Contains(out, `"\u001b[31mred\u001b]0;title\u0007"`) {
		t.Errorf("failed --json: exit %d, %q", code, out)
	}
}
