package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
)

// tcpPeerPID finds, among the processes pids, the one holding the client end of loopback TCP
// connection c (accepted on this side): its socket's inode from /proc/net/tcp, then a descriptor of
// that inode in /proc/PID/fd. 0 when none of them holds it.
func tcpPeerPID(c net.Conn, pids []int) (int, error) {
	local, ok1 := c.LocalAddr().(*net.TCPAddr)
	remote, ok2 := c.RemoteAddr().(*net.TCPAddr)
	if !ok1 || !ok2 || remote.IP.To4() == nil {
		return 0, fmt.Errorf("not an IPv4 TCP connection: %v", c.RemoteAddr())
	}
	// The client's socket: local address its port, remote address ours (both 127.0.0.1).
	want := fmt.Sprintf("%s %s", hexAddr(remote), hexAddr(local))
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	inode := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		// sl local rem st tx:rx tr:when retrnsmt uid timeout inode
		if len(fl) >= 10 && fl[1]+" "+fl[2] == want {
			inode = fl[9]
			break
		}
	}
	if inode == "" {
		return 0, fmt.Errorf("no socket %s in /proc/net/tcp", want)
	}
	link := "socket:[" + inode + "]"
	for _, pid := range pids {
		dir := "/proc/" + strconv.Itoa(pid) + "/fd/"
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if t, err := os.Readlink(dir + e.Name()); err == nil && t == link {
				return pid, nil
			}
		}
	}
	return 0, nil
}

// hexAddr is an IPv4 address and port as /proc/net/tcp writes them: the address as a native-endian
// (little-endian, x86-64) 32-bit hex number, the port in hex.
func hexAddr(a *net.TCPAddr) string {
	ip := a.IP.To4()
	return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], a.Port)
}
