module github.com/fsvirt/fsvirt

go 1.26.0

require (
	github.com/hashicorp/go-multierror v1.1.1
	github.com/seccomp/libseccomp-golang v0.11.1
	golang.org/x/net v0.62.0
	golang.org/x/sys v0.49.0
	pgregory.net/rapid v1.3.0
)

require github.com/hashicorp/errwrap v1.0.0 // indirect
