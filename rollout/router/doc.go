// Package router is sluice's data path: it takes each service's compiled
// traffic policy (package policy: the rules, the split and the one decision
// function, Compiled.Decide) and forwards every request to an instance of
// the version that decision chose.
//
// It owns the proxy (Router: its own HTTP/1.1 server, Serve and Shutdown),
// the lookup structures built from a routing table,
// the limits and the per-version metrics (Router.Stats, Collector). It
// imports the standard library, packages policy and routing and
// github.com/prometheus/client_golang/prometheus; it must not import
// rollout, store, the runtimes or any front door (bot, api, dashboard):
// rollout drives it, never the other way round. The engine speaks to it
// only through package routing's types, so nothing that only needs a
// policy, a table or a version's counters imports router.
//
// # The table and the decision
//
// Router serves a routing.Table, which the engine builds: services, their
// compiled policies, the live addresses of each version, and per service
// stickiness and a body limit.
// Update builds the lookup maps, the versions' counters and the header
// lines the request path writes once, and publishes them with an atomic
// pointer swap; the request path loads that pointer, never takes a lock,
// never compiles anything and never looks a label string up in a map. A
// request to <service>.<base> asks the service's Compiled.Decide for a
// version (then, for a sticky service whose split chose, honours the
// client's cookie if the policy still holds its version); a request to
// <version>.<service>.<base> goes to that version only
// (serviceRoute.choose). The predict operation calls the same Decide, so
// what it says is what the proxy does.
//
// Each instance address has a backend that outlives table swaps: it counts
// the requests in flight to it, keeps a pool of idle keep-alive connections
// and knows whether the instance is live. A request counts itself, then
// checks that the address is still in the current table and otherwise
// routes again; so once an Update has removed an address, Drain can wait
// for that count to reach zero knowing no new request will raise it again.
// That is what lets a switch happen with no request failing: old instances
// are stopped only after Drain.
//
// # Why the router has its own HTTP/1.1 path
//
// Measured on a 2-core machine (proxy and instances on one core, load on
// the other, 64 keep-alive connections, 64-byte responses), the first
// router, httputil.ReverseProxy with a tuned Transport behind net/http's
// server, served about 0.3 times the requests per second of the bare
// instance at about 90 µs of CPU per request; nginx split_clients, about
// 0.4 at 28-36 µs. The profile put 45% of the time in system calls (8.3 per
// request: flushing after every write sends the head and the body of a
// response separately), the rest in net/http's machinery around them:
// about 30 allocations per request, a reader and a writer goroutine per
// instance connection that each request hops through (0.6 context switches
// per request), header maps built and re-serialized on both sides. The
// routing decision itself is noise (tens of nanoseconds, see
// BenchmarkDecide).
//
// So Serve does what nginx does, in Go: one goroutine per client
// connection; heads parsed in place in a per-connection buffer (strictly:
// what two parsers could read two ways is refused, see http1.go); the
// instance gets the client's head as it came, less hop-by-hop fields, plus
// the fields the router owes it, in one write, with a body already at hand;
// the response head and a body already read go to the client in one write;
// connections to instances are pooled per instance, most recently used
// first. A request body declared with a Content-Length of up to 64 KiB
// (maxHeldBody) is read whole before the request goes out, as nginx's
// client_body_buffer_size does, and sent with the head in one write with
// no extra goroutine: fewer system calls for the common small upload, an
// instance connection is never held by a client that uploads slowly, and
// an idempotent request with such a body can be sent again. A request without a streamed body allocates nothing and makes
// about five system calls (nginx: six): a goroutine that has just written
// yields (runtime.Gosched) before it reads, so that other connections run
// while its peer answers, instead of finding nothing to read and asking
// again. Reads and writes are recvfrom and sendto made with
// syscall.RawSyscall through the connection's RawConn: still non-blocking,
// still parked on Go's netpoller with their deadlines, but without
// entering and leaving the scheduler's system-call state around each one:
// on one core the scheduler's monitor otherwise hands the processor to
// another thread whenever a call spans its tick, a context switch each way
// (0.25 per request, against 0.09 without; on Linux on 64-bit platforms,
// elsewhere the plain net.Conn calls). Other bodies are never held:
// each read is written on at once (server-sent events and chunked
// progress stream through), large fixed-length bodies move in reads and writes of up to 256 KiB
// (by splice(2) when 64 such copies run already; see largeMin),
// and a larger, chunked or Expect: 100-continue request body streams on
// its own goroutine so an instance may answer before it ends. With that, sluice serves as many requests per second as
// nginx with the same split at no more CPU per request (bench/README.md).
//
// A well-kept fast library was the other way: github.com/valyala/fasthttp
// (v1.78 on the module proxy). It was not taken because it would do work
// this path avoids (it parses every header into its own structures and
// re-serializes them on both sides), because the guarantees would still
// have to be built around it (its client buffers whole responses unless
// told otherwise, per-event flushing and Upgrade pass-through need its
// hijack and streaming escape hatches, dead-instance handling and draining
// are not its concern). The house habit of standing on
// httputil.ReverseProxy gave way to the figures above.
//
// # One front end
//
// Serve is the only way in: Router is deliberately not an http.Handler.
// A ServeHTTP beside it would have to implement the forwarding a second
// time over net/http's types (its own request head, body copy, upgrade and
// failure answers), and tests that went through it would not test what
// production runs. Tests, and a program that embeds sluice's router, serve
// it with Serve on a listener of their own (a loopback one in tests) and
// stop it with Shutdown. Within Serve, what became of a request that gets no
// response of an instance's is one typed outcome (rerouted, no instance,
// the instance dropped it, timed out, the client went away, ...), and the
// status and words of every answer of the router's own come from one
// table of them (outcome.go).
//
// # Guarantees
//
//   - Table changes fail no request: see Drain above; a request whose
//     version left the table before anything was sent routes again.
//   - An instance that refuses a connection is out of rotation at once and
//     probed again by one request after a backoff (1 s, doubling to 5 s);
//     the request that found it dead goes to another instance of the
//     version, whatever its method (nothing was sent). An idempotent
//     request (GET, HEAD, OPTIONS, TRACE, PUT, DELETE) without a streamed
//     body (none, or one read whole: see maxHeldBody) whose connection fails before any byte of a response is sent
//     again to an instance it has not tried: at most once per instance
//     (once more on a new connection when the failed one was a pooled
//     keep-alive connection the instance had closed). When every try
//     failed the client gets 502 saying how ("the instance reset the
//     connection without answering"), not 503: the instances run. Pooled
//     connections idle over a second are peeked at before reuse, so one
//     the instance closed is not used.
//   - An instance's response head over 64 KiB is 502 "response head too
//     large"; a malformed one 502 "malformed response head". A chunked
//     response body that turns malformed is passed on up to its last
//     well-formed piece, then the client's connection is closed (so the
//     client cannot take it for whole) and the cause is logged.
//   - A client that goes away while the instance works on its request
//     (no response head yet) cancels it: the instance connection is
//     closed, and the request stops counting in flight at once. The
//     router starts watching the client 20 ms into the wait, so fast
//     responses pay nothing for it.
//   - A version with no live instance answers 503 with Retry-After and
//     X-Sluice-Version at once; an instance that does not send its response
//     head within Limits.UpstreamTimeout gives 504; neither closes the
//     client's connection.
//   - Stickiness (routing.Service.Sticky): a cookie "sluice-<service>" pins a
//     client of the default URL to the version the split gave it while the
//     policy holds that version (weight above 0 or a rule); a matching rule
//     still wins.
//   - Bodies stream both ways (Content-Length, chunked, or until close),
//     except a request body of up to 64 KiB declared with Content-Length,
//     which is read whole first (a client that pauses over ReadTimeout
//     in it is cut off before any instance sees the request);
//     Upgrade requests (WebSocket and others) pass through to a tunnel that
//     counts in flight until it closes; Expect: 100-continue is answered
//     once the request reached an instance.
//   - The instance gets X-Forwarded-For, X-Forwarded-Host,
//     X-Forwarded-Proto and Forwarded describing the client the router saw
//     (values a client sent for them are dropped: the router is the edge;
//     unless the client is a proxy named in WithTrustedProxies, whose
//     X-Forwarded-For and Forwarded get its address appended and whose
//     X-Forwarded-Proto and -Host are kept), never a client's X-Real-IP,
//     the client's X-Request-Id or a new one, and no hop-by-hop field
//     (Connection and what it names, Keep-Alive, Proxy-Connection, TE,
//     Transfer-Encoding, Upgrade unless upgrading, Proxy-Authorization);
//     the client gets no hop-by-hop field of the instance's and the
//     router's X-Sluice-Version only.
//   - Limits (Limits, routing.Service.MaxBodyBytes): head size (431), body
//     size per service (413, before the instance sees a declared length),
//     read, write and idle timeouts, and a cap on connections that closes
//     idle ones to make room. A client sending its head a byte at a time is
//     cut off ReadTimeout after its first byte, so slowloris clients hold a
//     connection for at most that long. A request head with a bare LF
//     line end is 400 as soon as it is seen. An absolute-form target
//     (http:// or https://) is routed by its authority and forwarded in
//     origin form; an authority that is not a plain host and port (with
//     userinfo, an escape or a fragment) is 400.
//   - Metrics per version, counted with atomics on counters the table
//     holds: requests, responses by status class, a latency histogram and
//     requests in flight, for Prometheus (Collector) and for the engine
//     (Stats). A response is counted before its last write, so a client
//     that has its response finds it in the metrics.
package router
