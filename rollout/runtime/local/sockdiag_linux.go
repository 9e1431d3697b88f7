package local

import (
	"encoding/binary"
	"fmt"
	"syscall"
)

// listeners returns the local port of every TCP socket in LISTEN state in
// sluice's network namespace, by socket inode. It asks the kernel over
// NETLINK_SOCK_DIAG (what ss(8) uses) for listening sockets only, so its
// cost does not grow with the established and TIME_WAIT connections a busy
// router has: reading /proc/net/tcp instead formats every socket of the
// namespace as text, about 18,000 lines and tens of milliseconds of CPU
// per read under 1,000 client connections. The messages are laid out by
// linux/inet_diag.h; the standard library has the netlink framing.
func listeners() (map[uint64]int, error) {
	fd, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, syscall.NETLINK_INET_DIAG)
	if err != nil {
		return nil, fmt.Errorf("open sock_diag socket: %w", err)
	}
	defer syscall.Close(fd)
	out := map[uint64]int{}
	buf := make([]byte, 64<<10)
	for seq, family := range []uint8{syscall.AF_INET, syscall.AF_INET6} {
		if err := syscall.Sendto(fd, diagRequest(family, uint32(seq+1)), 0, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
			return nil, fmt.Errorf("ask sock_diag: %w", err)
		}
		if err := readDiag(fd, buf, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Constants and sizes of linux/sock_diag.h and linux/inet_diag.h.
const (
	sockDiagByFamily = 20 // SOCK_DIAG_BY_FAMILY
	tcpStateListen   = 10 // TCP_LISTEN
	inetDiagReqLen   = 56 // struct inet_diag_req_v2
	inetDiagMsgLen   = 72 // struct inet_diag_msg
	diagSportOff     = 4  // inet_diag_msg.id.idiag_sport (big-endian)
	diagInodeOff     = 68 // inet_diag_msg.idiag_inode
)

// diagRequest is a dump request for family's TCP sockets in LISTEN state.
func diagRequest(family uint8, seq uint32) []byte {
	b := make([]byte, syscall.NLMSG_HDRLEN+inetDiagReqLen)
	binary.NativeEndian.PutUint32(b[0:], uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:], sockDiagByFamily)
	binary.NativeEndian.PutUint16(b[6:], syscall.NLM_F_REQUEST|syscall.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(b[8:], seq)
	r := b[syscall.NLMSG_HDRLEN:]
	r[0], r[1] = family, syscall.IPPROTO_TCP
	binary.NativeEndian.PutUint32(r[4:], 1<<tcpStateListen)
	return b
}

// readDiag reads one dump's answers into out, until its NLMSG_DONE.
func readDiag(fd int, buf []byte, out map[uint64]int) error {
	for {
		n, _, err := syscall.Recvfrom(fd, buf, 0)
		if err != nil {
			return fmt.Errorf("read sock_diag: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return fmt.Errorf("parse sock_diag: %w", err)
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case syscall.NLMSG_DONE:
				return nil
			case syscall.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if e := int32(binary.NativeEndian.Uint32(m.Data)); e != 0 {
						return fmt.Errorf("sock_diag: %w", syscall.Errno(-e))
					}
				}
				return fmt.Errorf("sock_diag: malformed error message")
			case sockDiagByFamily:
				if len(m.Data) < inetDiagMsgLen {
					continue
				}
				port := binary.BigEndian.Uint16(m.Data[diagSportOff:])
				out[uint64(binary.NativeEndian.Uint32(m.Data[diagInodeOff:]))] = int(port)
			}
		}
	}
}
