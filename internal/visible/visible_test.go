package visible

import "testing"

func TestEscape(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"plain text, ünïcode, 漢字", "plain text, ünïcode, 漢字"},
		{"a\tb\nc", "a\tb\nc"},
		{"\x1b[31mred\x1b]0;title\x07", `\x1b[31mred\x1b]0;title\x07`},
		{"over\rwrite", `over\rwrite`},
		{"nul\x00 bs\x08 del\x7f", `nul\x00 bs\x08 del\x7f`},
		{"c1 \u009b2J csi", `c1 \u009b2J csi`},
		{"bidi \u202eevil\u202c \u2066iso\u2069", `bidi \u202eevil\u202c \u2066iso\u2069`},
		{"bad utf-8 \xff\xc3", `bad utf-8 \xff\xc3`},
		{"", ""},
	} {
		if got := Escape(tc.in); got != tc.want {
			t.Errorf("Escape(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
