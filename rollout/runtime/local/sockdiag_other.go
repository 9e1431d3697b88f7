//go:build !linux

package local

import "errors"

// listeners is Linux only; elsewhere the /proc tables are read (and there
// are none, so ports are not watched).
func listeners() (map[uint64]int, error) {
	return nil, errors.New("sock_diag is Linux only")
}
