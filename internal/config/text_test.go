package config

import "testing"

func TestIsEnvName(t *testing.T) {
	t.Parallel()
	for name, ok := range map[string]bool{"A": true, "_x1": true, "PAMPA_DB": true, "": false, "1A": false, "A-B": false, "A=B": false, "A B": false} {
		if IsEnvName(name) != ok {
			t.Errorf("IsEnvName(%q) = %v", name, !ok)
		}
	}
}
