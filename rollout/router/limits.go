package router

import "time"

// Defaults of Limits, used for every field left zero.
const (
	// DefaultMaxHeaderBytes bounds a request's line and header fields.
	DefaultMaxHeaderBytes = 64 << 10
	// DefaultMaxBodyBytes bounds a request body for services that set no
	// limit of their own (as Cloud Run does for HTTP/1).
	DefaultMaxBodyBytes = 32 << 20
	// DefaultReadTimeout bounds the arrival of a request head, and each
	// wait for more of a request body.
	DefaultReadTimeout = 15 * time.Second
	// DefaultWriteTimeout bounds each write to a client.
	DefaultWriteTimeout = 60 * time.Second
	// DefaultIdleTimeout bounds the wait for the next request on a
	// keep-alive connection.
	DefaultIdleTimeout = 120 * time.Second
	// DefaultUpstreamTimeout bounds the wait for an instance's response
	// head once the request is sent.
	DefaultUpstreamTimeout = 60 * time.Second
	// DefaultMaxConns bounds the client connections served at once.
	DefaultMaxConns = 10000
)

// Limits protect the router from clients and clients from stuck instances.
// A zero field takes its Default* value.
type Limits struct {
	// MaxHeaderBytes bounds a request's line and header fields; a longer
	// head is answered 431 and the connection closed.
	MaxHeaderBytes int
	// MaxBodyBytes bounds a request body for services whose routing.Service
	// sets none; a larger one is answered 413. Negative: no limit.
	MaxBodyBytes int64
	// ReadTimeout bounds how long a request head may take to arrive from
	// its first byte (from the connection's start for the first request),
	// so a client sending a byte at a time cannot hold a connection; and how
	// long a request body may pause. A connection that runs out of it is
	// closed.
	ReadTimeout time.Duration
	// WriteTimeout bounds each write to a client: one that stops reading
	// is dropped.
	WriteTimeout time.Duration
	// IdleTimeout bounds the wait for the next request on a keep-alive
	// connection.
	IdleTimeout time.Duration
	// UpstreamTimeout bounds the wait for an instance's response head once
	// the request is sent; past it the client gets 504. A response body may
	// then take as long as it takes (server-sent events).
	UpstreamTimeout time.Duration
	// MaxConns bounds the client connections Serve handles at once. A new
	// connection past it closes an idle one (waiting for a request, no byte
	// of it yet) to make room, or is closed itself when none is idle.
	MaxConns int
}

func (l Limits) withDefaults() Limits {
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if l.MaxBodyBytes == 0 {
		l.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if l.ReadTimeout <= 0 {
		l.ReadTimeout = DefaultReadTimeout
	}
	if l.WriteTimeout <= 0 {
		l.WriteTimeout = DefaultWriteTimeout
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = DefaultIdleTimeout
	}
	if l.UpstreamTimeout <= 0 {
		l.UpstreamTimeout = DefaultUpstreamTimeout
	}
	if l.MaxConns <= 0 {
		l.MaxConns = DefaultMaxConns
	}
	return l
}

// WithLimits sets the router's limits; zero fields keep their defaults.
func WithLimits(l Limits) Option {
	return func(r *Router) { r.limits = l }
}
