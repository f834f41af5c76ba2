package impl

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
)

// TestUnixSocketInView: binding a UNIX socket to a path in the tree creates the socket file in the
// private layer, never in the shared tree, and connecting to that path inside the view reaches it.
func TestUnixSocketInView(t *testing.T) {
	shared := t.TempDir()
	p, _ := newTestPool(t, 1, shared)
	sock := filepath.Join(shared, "s.sock")
	err := p.Invoke(context.Background(), func(inv *Invocation) error {
		l, err := net.Listen("unix", sock)
		if err != nil {
			return err
		}
		defer l.Close()
		if _, err := os.Lstat(sock); err != nil {
			return err // the view shows the socket
		}
		c, err := net.Dial("unix", sock)
		if err != nil {
			return err
		}
		defer c.Close()
		a, err := l.Accept()
		if err != nil {
			return err
		}
		defer a.Close()
		if _, err := c.Write([]byte("hi")); err != nil {
			return err
		}
		buf := make([]byte, 2)
		if _, err := a.Read(buf); err != nil || string(buf) != "hi" {
			t.Errorf("read %q, %v through the socket", buf, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("the socket file reached the shared tree: %v", err)
	}
}
