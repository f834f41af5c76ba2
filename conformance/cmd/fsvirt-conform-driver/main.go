// Command fsvirt-conform-driver performs one run of a conformance case with
// real system calls and prints what it observed as JSON lines. It is what
// `fsvirt conformance` runs inside each implementation under test; see
// docs/conformance.md.
package main

import (
	"context"
	"os"

	"github.com/fsvirt/fsvirt/conformance/driver"
)

func main() {
	os.Exit(driver.Main(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
