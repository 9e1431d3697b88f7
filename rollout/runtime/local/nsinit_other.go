//go:build !linux

package local

import "errors"

// nsCloneFlags: no namespaces outside Linux.
const nsCloneFlags = 0

// RunNamespaceInit does nothing outside Linux; see the Linux version.
func RunNamespaceInit() {}

func (l *Local) nsSupported() error {
	return errors.New("namespaces need Linux")
}

func (l *Local) nsArgv(command string) []string { return nil }
