package config

import (
	"errors"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ExpandEnv replaces each ${NAME} in s with the environment variable
// NAME. An unset variable is an error: a connection string with a silently
// empty password fails later, and less clearly. A "$" not followed by "{"
// is kept.
func ExpandEnv(s string, lookup func(string) (string, bool)) (string, error) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		b.WriteString(s[:i])
		end := strings.IndexByte(s[i+2:], '}')
		if end < 0 {
			return "", errors.New(`"${" without a closing "}"`)
		}
		name := s[i+2 : i+2+end]
		if !IsEnvName(name) {
			return "", fmt.Errorf("%q is not an environment variable name; use letters, digits and '_'", name)
		}
		val, ok := lookup(name)
		if !ok {
			return "", fmt.Errorf("environment variable %s is not set", name)
		}
		b.WriteString(val)
		s = s[i+2+end+1:]
	}
}

// IsEnvName reports whether s can name an environment variable: letters,
// digits and '_', not starting with a digit.
func IsEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		letter := r == '_' || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z')
		if !letter && (i == 0 || r < '0' || r > '9') {
			return false
		}
	}
	return true
}

// StripKey removes every entry with this key, at any depth, from a config
// document (ssh_password, say, so that a secret written in the config is
// not copied to every node). A document without any is returned unchanged,
// byte for byte; n counts the entries removed.
func StripKey(data []byte, key string) (out []byte, n int, err error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, 0, err
	}
	var walk func(*yaml.Node)
	walk = func(y *yaml.Node) {
		if y.Kind == yaml.MappingNode {
			kept := y.Content[:0]
			for i := 0; i+1 < len(y.Content); i += 2 {
				if y.Content[i].Value == key {
					n++
					continue
				}
				kept = append(kept, y.Content[i], y.Content[i+1])
			}
			y.Content = kept
		}
		for _, c := range y.Content {
			walk(c)
		}
	}
	walk(&doc)
	if n == 0 {
		return data, 0, nil
	}
	out, err = yaml.Marshal(&doc)
	return out, n, err
}
