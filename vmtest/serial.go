package vmtest

import (
	"bytes"
	"errors"
	"io"
)

// errNoMarker reports that a serial port closed before its marker line arrived: the VM
// stopped before the job finished.
var errNoMarker = errors.New("port closed before the end marker")

// copyPort copies what the guest wrote to one serial port from r to w until marker, and
// returns the rest of the marker's line. init writes the marker right after the job's last
// byte, so it may follow output that does not end in a newline. Only a tail that could be the
// start of the marker is held back; what follows the marker line is discarded, so that QEMU
// never blocks on a full pipe.
func copyPort(w io.Writer, r io.Reader, marker string) (string, error) {
	m := []byte(marker)
	buf := make([]byte, 0, 64<<10)
	var werr error
	write := func(p []byte) {
		if werr == nil && len(p) > 0 {
			_, werr = w.Write(p)
		}
	}
	chunk := make([]byte, 32<<10)
	for {
		n, err := r.Read(chunk)
		buf = append(buf, chunk[:n]...)
		if i := bytes.Index(buf, m); i >= 0 {
			write(buf[:i])
			buf = append(buf[:0], buf[i:]...)
			if eol := bytes.IndexByte(buf, '\n'); eol >= 0 {
				_, _ = io.Copy(io.Discard, r)
				return string(bytes.TrimSpace(buf[len(m):eol])), werr
			}
		} else {
			keep := markerPrefixLen(buf, m)
			write(buf[:len(buf)-keep])
			buf = append(buf[:0], buf[len(buf)-keep:]...)
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF):
			write(buf)
			if werr != nil {
				return "", werr
			}
			return "", errNoMarker
		default:
			return "", err
		}
	}
}

// markerPrefixLen returns the length of the longest tail of buf that is a proper prefix of m.
func markerPrefixLen(buf, m []byte) int {
	for k := min(len(buf), len(m)-1); k > 0; k-- {
		if bytes.HasSuffix(buf, m[:k]) {
			return k
		}
	}
	return 0
}
