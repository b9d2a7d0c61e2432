package main

import (
	"encoding/json"
	"os/exec"
	"testing"
)

// TestInstallable checks, without downloading anything, what
// `go install github.com/pampa-go/pampa/cmd/pampa@version` needs of the
// module that a build in this checkout would not notice: no replace or
// exclude directive in go.mod (go install refuses a module with them).
// `make install-check` does the real install, from the module proxy.
func TestInstallable(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "mod", "edit", "-json", "../../go.mod").Output()
	if err != nil {
		t.Fatal(err)
	}
	var mod struct {
		Module  struct{ Path string }
		Replace []any
		Exclude []any
	}
	if err := json.Unmarshal(out, &mod); err != nil {
		t.Fatal(err)
	}
	if mod.Module.Path != "github.com/pampa-go/pampa" || len(mod.Replace) != 0 || len(mod.Exclude) != 0 {
		t.Errorf("go.mod: module %q, %d replace and %d exclude directives; go install ...@version takes none", mod.Module.Path, len(mod.Replace), len(mod.Exclude))
	}
	for _, script := range []string{"../../scripts/install-check.sh", "../../scripts/release.sh"} {
		if out, err := exec.Command("bash", "-n", script).CombinedOutput(); err != nil {
			t.Errorf("bash -n %s: %v\n%s", script, err, out)
		}
	}
}
