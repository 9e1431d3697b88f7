package router

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// This file copies message bodies between a reader and a destination, by
// their framing: a Content-Length, chunked, or until the sender closes.
// Every read is passed on as soon as it arrives (server-sent events and
// chunked progress stream through); nothing is held back to fill a buffer.

// errBodyTooLarge is a request body over the service's limit: 413.
var errBodyTooLarge = errors.New("request body too large")

// A fixed-length body whose rest is over largeMin bytes is moved between
// two connections in reads and writes of up to largeBufSize bytes (see
// copyLarge) rather than through the connection's small buffer: each read
// takes everything the sender has sent so far, each write hands it all on,
// as nginx's buffered read loop does. At most largeSlots such buffers
// exist at once (largeSlots × largeBufSize of memory); beyond that the
// body moves by splice(2) (io.CopyN between the TCP connections), which
// needs no memory in the process but, measured, serves 1 MiB responses at
// about 0.75× the request rate (it alternates between draining the sender
// into a pipe and pumping the pipe out, and waits more on each side).
// spliceStep bounds one splice, so that the write deadline is renewed
// between steps.
const (
	largeMin     = 64 << 10
	largeBufSize = 256 << 10
	largeSlots   = 64
	spliceStep   = 1 << 20
)

// largeBufs holds copyLarge's buffers; largeFree counts those that may
// still be taken.
var (
	largeBufs = sync.Pool{New: func() any { b := make([]byte, largeBufSize); return &b }}
	largeFree = make(chan struct{}, largeSlots)
)

// sink is where a body goes: a connection, or an http.ResponseWriter.
// final marks the write that completes the message, when the copier knows
// it (a Content-Length body, a chunked one passed on as it is).
type sink interface {
	write(p []byte, final bool) error
}

// connSink writes to a connection, renewing the write deadline before every
// write when timeout is set (a client that stops reading is dropped).
// beforeFinal, when set, runs once before the final write: the response's
// metrics are counted before the client can see its end.
type connSink struct {
	c           net.Conn
	timeout     time.Duration
	beforeFinal func()
}

func (s *connSink) write(p []byte, final bool) error {
	if final {
		s.final()
	}
	if s.timeout > 0 {
		s.c.SetWriteDeadline(time.Now().Add(s.timeout))
	}
	if _, err := s.c.Write(p); err != nil {
		return &sinkError{err}
	}
	return nil
}

// final runs beforeFinal once.
func (s *connSink) final() {
	if f := s.beforeFinal; f != nil {
		s.beforeFinal = nil
		f()
	}
}

// maxMerge is how many body bytes are appended to a head (pre) so that both
// go out in one write.
const maxMerge = 16 << 10

// merge appends b to pre when it fits pre's capacity (no allocation) and
// maxMerge; it reports whether it did.
func merge(pre *[]byte, b []byte) bool {
	if len(*pre) == 0 || len(b) > maxMerge || len(*pre)+len(b) > cap(*pre) {
		return false
	}
	*pre = append(*pre, b...)
	return true
}

// copyFixed copies n body bytes from src to dst, pre (a head, possibly
// empty) first, in as few writes as the reads allow. A sender that stops
// early is io.ErrUnexpectedEOF.
func copyFixed(dst sink, src *reader, n int64, pre []byte) error {
	for {
		b := src.buffered()
		if int64(len(b)) > n {
			b = b[:n]
		}
		if merge(&pre, b) {
			src.consume(len(b))
			n -= int64(len(b))
			b = nil
		}
		if len(pre) > 0 && (n == 0 || len(b) > 0 || src.r == src.w) {
			if err := dst.write(pre, n == 0); err != nil {
				return err
			}
			pre = pre[:0]
		}
		if len(b) > 0 {
			if err := dst.write(b, int64(len(b)) == n); err != nil {
				return err
			}
			src.consume(len(b))
			n -= int64(len(b))
		}
		if n == 0 {
			return nil
		}
		if n > largeMin {
			if cs, ok := dst.(*connSink); ok {
				return copyLarge(cs, src, n)
			}
		}
		if err := src.fill(); err != nil {
			return unexpected(err)
		}
	}
}

// copyLarge moves the n remaining bytes of a body (none buffered) from
// src's connection to dst through a buffer of largeBufSize bytes, or by
// spliceFixed when largeSlots buffers are in use already.
func copyLarge(dst *connSink, src *reader, n int64) error {
	select {
	case largeFree <- struct{}{}:
	default:
		return spliceFixed(dst, src, n)
	}
	bp := largeBufs.Get().(*[]byte)
	defer func() {
		largeBufs.Put(bp)
		<-largeFree
	}()
	buf := *bp
	for n > 0 {
		if src.timeout > 0 {
			src.conn.SetReadDeadline(time.Now().Add(src.timeout))
		}
		m, err := src.conn.Read(buf[:min(n, int64(len(buf)))])
		if m > 0 {
			n -= int64(m)
			if werr := dst.write(buf[:m], n == 0); werr != nil {
				return werr
			}
		}
		if err != nil && n > 0 {
			return unexpected(err)
		}
	}
	return nil
}

// spliceFixed moves the n remaining bytes (none buffered) from src's
// connection straight to dst's.
func spliceFixed(dst *connSink, src *reader, n int64) error {
	for n > 0 {
		step := min(n, spliceStep)
		if step == n {
			dst.final()
		}
		if dst.timeout > 0 {
			dst.c.SetWriteDeadline(time.Now().Add(dst.timeout))
		}
		if src.timeout > 0 {
			src.conn.SetReadDeadline(time.Now().Add(src.timeout))
		}
		m, err := io.CopyN(unwrap(dst.c), unwrap(src.conn), step)
		n -= m
		if err != nil {
			if err == io.EOF {
				return io.ErrUnexpectedEOF
			}
			// Which side failed is not known here; say the destination's
			// unless the source hit its deadline.
			if errors.Is(err, os.ErrDeadlineExceeded) && src.timeout > 0 {
				return err
			}
			return &sinkError{err}
		}
	}
	return nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// copyToEOF copies everything src sends until it closes.
func copyToEOF(dst sink, src *reader, pre []byte) error {
	for {
		b := src.buffered()
		if merge(&pre, b) {
			src.consume(len(b))
			b = nil
		}
		if len(pre) > 0 {
			if err := dst.write(pre, false); err != nil {
				return err
			}
			pre = pre[:0]
		}
		if len(b) > 0 {
			if err := dst.write(b, false); err != nil {
				return err
			}
			src.consume(len(b))
		}
		if err := src.fill(); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}

// chunkState is where a chunked body's parser stands.
type chunkState uint8

const (
	chunkSize    chunkState = iota // expecting a chunk-size line
	chunkData                      // inside chunk data
	chunkDataEnd                   // expecting the CRLF after chunk data
	chunkTrailer                   // expecting a trailer line or the final CRLF
	chunkDone
)

// maxChunkLine bounds a chunk-size or trailer line.
const maxChunkLine = 4096

// chunker follows a chunked body (RFC 9112 7.1) strictly, so that the
// router and the receiver agree on where it ends.
type chunker struct {
	state chunkState
	left  int64 // data bytes left in the current chunk
	total int64 // data bytes so far
}

// step consumes one piece of b: a size line, a trailer line, the CRLF
// after data, or some chunk data. It returns how many bytes it consumed and
// whether they were chunk data; 0 bytes and no error means b holds no
// complete piece (read more).
func (k *chunker) step(b []byte) (n int, data bool, err error) {
	switch k.state {
	case chunkData:
		n = int(min(int64(len(b)), k.left))
		k.left -= int64(n)
		k.total += int64(n)
		if k.left == 0 {
			k.state = chunkDataEnd
		}
		return n, true, nil
	case chunkDataEnd:
		if len(b) < 2 {
			return 0, false, nil
		}
		if b[0] != '\r' || b[1] != '\n' {
			return 0, false, errMalformed
		}
		k.state = chunkSize
		return 2, false, nil
	case chunkDone:
		return 0, false, io.EOF
	}
	nl := bytes.IndexByte(b, '\n')
	if nl < 0 {
		if len(b) >= maxChunkLine {
			return 0, false, errMalformed
		}
		return 0, false, nil
	}
	if nl == 0 || b[nl-1] != '\r' {
		return 0, false, errMalformed
	}
	line := b[:nl-1]
	if k.state == chunkTrailer {
		if len(line) == 0 {
			k.state = chunkDone
			return nl + 1, false, nil
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 1 {
			return 0, false, errMalformed
		}
		for _, c := range line[:colon] {
			if !tokenChar[c] {
				return 0, false, errMalformed
			}
		}
		for _, c := range line[colon+1:] {
			if c < ' ' && c != '\t' || c == 0x7f {
				return 0, false, errMalformed
			}
		}
		return nl + 1, false, nil
	}
	// chunk-size [; extensions]
	size, i := int64(0), 0
	for ; i < len(line); i++ {
		c := line[i]
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			goto ext
		}
		if i >= 15 {
			return 0, false, errMalformed // would overflow
		}
		size = size<<4 | int64(d)
	}
ext:
	if i == 0 {
		return 0, false, errMalformed
	}
	for _, c := range line[i:] {
		if c < ' ' && c != '\t' || c == 0x7f {
			return 0, false, errMalformed
		}
	}
	// chunk-size [";" extensions], blanks allowed only at the end of the
	// line ("3 x" is not a size). RFC 9112 would also allow them before
	// ';', which net/http, and so many instances, refuse: "3 ;x" is
	// refused here rather than read one way by the router and refused or
	// read another way by the instance.
	j := i
	for j < len(line) && (line[j] == ' ' || line[j] == '\t') {
		j++
	}
	if j < len(line) && (line[j] != ';' || j > i) {
		return 0, false, errMalformed
	}
	if size == 0 {
		k.state = chunkTrailer
	} else {
		k.state, k.left = chunkData, size
	}
	return nl + 1, false, nil
}

// copyChunked copies a chunked body from src to dst, pre first. With
// decode, only the data goes to dst (for a receiver that frames it itself);
// otherwise the body goes as it came, chunk lines and trailers included,
// once checked. A body whose data passes limit (when limit >= 0) fails with
// errBodyTooLarge before the excess is written. A malformed body fails with
// errMalformed after what was well-formed before it was written (the
// receiver then sees the message cut off there).
func copyChunked(dst sink, src *reader, pre []byte, decode bool, limit int64) error {
	var k chunker
	// flush writes pre, then b if not empty; final when the body is done.
	flush := func(b []byte) error {
		if len(b) > 0 && merge(&pre, b) {
			b = nil
		}
		if len(pre) > 0 {
			if err := dst.write(pre, len(b) == 0 && k.state == chunkDone); err != nil {
				return err
			}
			pre = pre[:0]
		}
		if len(b) > 0 {
			return dst.write(b, k.state == chunkDone)
		}
		return nil
	}
	for {
		b := src.buffered()
		if decode {
			// Pass each piece of data on; skip the framing.
			for len(b) > 0 && k.state != chunkDone {
				n, data, err := k.step(b)
				if err == nil && limit >= 0 && k.total > limit {
					err = errBodyTooLarge
				}
				if err != nil {
					if ferr := flush(nil); ferr != nil {
						return ferr
					}
					return err
				}
				if n == 0 {
					break
				}
				if data && !merge(&pre, b[:n]) {
					if err := flush(b[:n]); err != nil {
						return err
					}
				}
				src.consume(n)
				b = src.buffered()
			}
		} else {
			// Find how far the buffered bytes are complete pieces, then
			// pass them on as they are.
			done := 0
			var serr error
			for done < len(b) && k.state != chunkDone {
				n, _, err := k.step(b[done:])
				if err == nil && limit >= 0 && k.total > limit {
					err = errBodyTooLarge
				}
				if err != nil {
					serr = err
					break
				}
				if n == 0 {
					break
				}
				done += n
			}
			if serr == errBodyTooLarge {
				return serr // nothing of the excess goes out
			}
			if err := flush(b[:done]); err != nil {
				return err
			}
			src.consume(done)
			if serr != nil {
				return serr
			}
		}
		if k.state == chunkDone {
			return flush(nil)
		}
		if len(pre) > 0 && src.r == src.w {
			// Waiting for more: send what is complete first.
			if err := flush(nil); err != nil {
				return err
			}
		}
		if err := src.fill(); err != nil {
			if err == errHeadTooLarge {
				err = errMalformed // a line longer than the buffer
			} else {
				err = unexpected(err)
			}
			if ferr := flush(nil); ferr != nil {
				return ferr
			}
			return err
		}
	}
}

func appendHex(b []byte, n uint64) []byte {
	const digits = "0123456789abcdef"
	var tmp [16]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = digits[n&15]
		n >>= 4
		if n == 0 {
			break
		}
	}
	return append(b, tmp[i:]...)
}
