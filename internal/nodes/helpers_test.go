package nodes

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"testing"
)

func errNotExist(name string) error { return fmt.Errorf("%s: %w", name, fs.ErrNotExist) }

func fmtAll(v any) string { return fmt.Sprintf("%v %+v %#v %s", v, v, v, v) }

func jsonOf(t testing.TB, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
