package driver

import (
	"strings"
	"testing"
)

func TestParseCaseErrors(t *testing.T) {
	for _, tc := range []struct{ name, json, want string }{
		{"unknown-op", `{"category":"rename","tree":[],"ops":[{"op":"frob"}]}`, `unknown op "frob"`},
		{"undefined-fd", `{"category":"rename","tree":[],"ops":[{"op":"close","fd":"f"}]}`, `descriptor "f" is not defined`},
		{"unused-field", `{"category":"rename","tree":[],"ops":[{"op":"getcwd","path":"a"}]}`, `field "path" is not used`},
		{"missing-field", `{"category":"rename","tree":[],"ops":[{"op":"rename","path":"a"}]}`, `field "newpath" is required`},
		{"bad-flag", `{"category":"rename","tree":[],"ops":[{"op":"open","path":"a","as":"f","flags":"O_FROB"}]}`, `unknown constant "O_FROB"`},
		{"bad-category", `{"category":"misc","tree":[],"ops":[{"op":"getcwd"}]}`, `category "misc"`},
		{"bad-tree", `{"category":"rename","tree":["file a/b x"],"ops":[{"op":"getcwd"}]}`, `parent "a"`},
		{"ops-and-runs", `{"category":"rename","tree":[],"ops":[{"op":"getcwd"}],"runs":[[{"op":"getcwd"}]]}`, `not both`},
		{"unknown-key", `{"category":"rename","tree":[],"ops":[{"op":"getcwd","frob":1}]}`, `unknown field "frob"`},
	} {
		_, err := ParseCase(tc.name, []byte(tc.json))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one with %q", tc.name, err, tc.want)
		}
	}
}
