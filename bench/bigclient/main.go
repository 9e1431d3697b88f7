// Command bigclient is the load generator bench/router.sh uses for large
// responses (the big1m workload) in place of wrk. wrk reads every response
// 8 KiB at a time (its receive buffer is fixed when it is compiled), so a
// 1 MiB response costs it about 130 read calls; on two cores that made wrk's
// own core the limit, and the row measured the client rather than the
// proxy. bigclient reads bodies in -buf pieces (64 KiB by default), which
// lets one core take about 3.5× as many 1 MiB responses as wrk can.
//
// It keeps -c keep-alive HTTP/1.1 connections busy for -d with GET requests
// for the URL's path, each body read to its Content-Length, and prints, in
// the lines of wrk's --latency output that router.sh reads, the median and
// 99th percentile latency, the number of requests and the rate. Any error
// (a refused connection, a status other than 2xx, a response without a
// Content-Length) ends it with a non-zero exit and the cause.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/textproto"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

func main() {
	conns := flag.Int("c", 16, "connections")
	dur := flag.Duration("d", 5*time.Second, "how long to send requests")
	host := flag.String("host", "", "Host header; default the URL's host")
	bufSize := flag.Int("buf", 64<<10, "bytes read from a connection at a time")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: bigclient [-c conns] [-d duration] [-host name] [-buf bytes] http://host:port/path")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	u, err := url.Parse(flag.Arg(0))
	if err != nil || u.Scheme != "http" || u.Host == "" {
		fmt.Fprintf(os.Stderr, "bigclient: %q is not an http:// URL\n", flag.Arg(0))
		os.Exit(2)
	}
	if *host == "" {
		*host = u.Host
	}
	req := []byte("GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + *host + "\r\n\r\n")

	var (
		mu    sync.Mutex
		lats  []time.Duration
		first error
		wg    sync.WaitGroup
	)
	start := time.Now()
	stop := start.Add(*dur)
	for range *conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine, err := load(u.Host, req, *bufSize, stop)
			mu.Lock()
			defer mu.Unlock()
			lats = append(lats, mine...)
			if err != nil && first == nil {
				first = err
			}
		}()
	}
	wg.Wait()
	if first != nil {
		fmt.Fprintln(os.Stderr, "bigclient:", first)
		os.Exit(1)
	}
	if len(lats) == 0 {
		fmt.Fprintln(os.Stderr, "bigclient: no response in", *dur)
		os.Exit(1)
	}
	slices.Sort(lats)
	at := func(q float64) string {
		return fmt.Sprintf("%.3fms", float64(lats[int(q*float64(len(lats)-1))])/1e6)
	}
	elapsed := time.Since(start)
	fmt.Printf("  Latency Distribution\n     50%%   %s\n     99%%   %s\n", at(0.50), at(0.99))
	fmt.Printf("  %d requests in %s\n", len(lats), elapsed.Round(time.Millisecond))
	fmt.Printf("Requests/sec: %.2f\n", float64(len(lats))/elapsed.Seconds())
}

// load sends requests on one connection until stop and returns the latency
// of each, to the end of its body.
func load(addr string, req []byte, bufSize int, stop time.Time) ([]time.Duration, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	// A small buffer for the head; body reads larger than it go straight
	// to the connection.
	br := bufio.NewReaderSize(c, 4<<10)
	tp := textproto.NewReader(br)
	buf := make([]byte, bufSize)
	var lats []time.Duration
	for time.Now().Before(stop) {
		t0 := time.Now()
		if _, err := c.Write(req); err != nil {
			return lats, err
		}
		n, err := readHead(tp)
		if err != nil {
			return lats, err
		}
		for n > 0 {
			m, err := br.Read(buf[:min(n, int64(len(buf)))])
			n -= int64(m)
			if err != nil && n > 0 {
				return lats, fmt.Errorf("reading a body: %w", err)
			}
		}
		lats = append(lats, time.Since(t0))
	}
	return lats, nil
}

// readHead reads a response head and returns its Content-Length.
func readHead(tp *textproto.Reader) (int64, error) {
	line, err := tp.ReadLine()
	if err != nil {
		return 0, fmt.Errorf("reading a status line: %w", err)
	}
	_, rest, _ := strings.Cut(line, " ")
	if !strings.HasPrefix(rest, "2") {
		return 0, fmt.Errorf("response %q", line)
	}
	h, err := tp.ReadMIMEHeader()
	if err != nil {
		return 0, fmt.Errorf("reading a head: %w", err)
	}
	n, err := strconv.ParseInt(h.Get("Content-Length"), 10, 64)
	if err != nil || n < 0 {
		return 0, errors.New("response without a Content-Length")
	}
	return n, nil
}
