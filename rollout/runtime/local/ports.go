package local

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// The default range instances' ports are drawn from. It lies below Linux's
// default ephemeral range (32768–60999), which the kernel hands out for
// port-0 binds and, above all, as the local port of outgoing connections:
// the router's own connections to instances. A port from the ephemeral
// range can be taken that way while its instance restarts, and the
// instance then cannot bind it again.
const (
	DefaultPortMin = 20000
	DefaultPortMax = 29999
)

// ephemeralRange is where Linux keeps its ephemeral port range.
const ephemeralRange = "/proc/sys/net/ipv4/ip_local_port_range"

// WithPortRange sets the range, inclusive, instances' ports are drawn from.
// It should not overlap the kernel's ephemeral range (New warns when it
// does) nor ports other software on the machine listens on. Default
// DefaultPortMin–DefaultPortMax.
func WithPortRange(min, max int) Option {
	return func(l *Local) { l.portMin, l.portMax = min, max }
}

// ParsePortRange reads "MIN-MAX" (e.g. "20000-29999").
func ParsePortRange(s string) (min, max int, err error) {
	lo, hi, ok := strings.Cut(strings.TrimSpace(s), "-")
	if ok {
		min, err = strconv.Atoi(strings.TrimSpace(lo))
	}
	if ok && err == nil {
		max, err = strconv.Atoi(strings.TrimSpace(hi))
	}
	if !ok || err != nil || min < 1 || max > 65535 || min > max {
		return 0, 0, fmt.Errorf("port range %q: want MIN-MAX with 1 <= MIN <= MAX <= 65535, like %d-%d", s, DefaultPortMin, DefaultPortMax)
	}
	return min, max, nil
}

// checkPortRange validates the range and warns when it overlaps the
// kernel's ephemeral range.
func (l *Local) checkPortRange() error {
	if l.portMin < 1 || l.portMax > 65535 || l.portMin > l.portMax {
		return fmt.Errorf("invalid port range %d-%d", l.portMin, l.portMax)
	}
	l.portCursor = rand.IntN(l.portMax - l.portMin + 1)
	b, err := os.ReadFile(ephemeralRange)
	if err != nil {
		return nil
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return nil
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err1 == nil && err2 == nil && l.portMin <= hi && lo <= l.portMax {
		l.log.Warn("the instance port range overlaps the kernel's ephemeral ports: an outgoing connection can take an instance's port while it restarts",
			"port_range", fmt.Sprintf("%d-%d", l.portMin, l.portMax), "ephemeral", fmt.Sprintf("%d-%d", lo, hi))
	}
	return nil
}

// allocPorts reserves n distinct ports of the range that no live group of
// this Local holds (running or restarting) and that nothing listens on now.
// The search starts after the last port handed out, so a port freed by a
// stopped group is the last to be handed out again.
func (l *Local) allocPorts(n int) ([]int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	size := l.portMax - l.portMin + 1
	var ports []int
	start := l.portCursor
	for i := 0; i < size && len(ports) < n; i++ {
		off := (start + i) % size
		p := l.portMin + off
		if l.ports[p] || !bindable(p) {
			continue
		}
		ports = append(ports, p)
		l.portCursor = (off + 1) % size
	}
	if len(ports) < n {
		return nil, errors.New("allocate ports: every port of the range is in use")
	}
	for _, p := range ports {
		l.ports[p] = true
	}
	return ports, nil
}

// bindable reports whether port can be bound on 127.0.0.1 now.
func bindable(port int) bool {
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	_ = ln.Close()
	return true
}
