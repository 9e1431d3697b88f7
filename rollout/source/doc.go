// Package source moves source trees around as gzip-compressed tar archives:
// Pack turns a directory into one, Inspect validates one and returns its
// sluice.yaml, Extract writes one into an empty directory.
//
// An archive is untrusted input (it may come from a CLI user or a GitHub
// tarball of any commit), so every entry is checked before anything is
// written: no absolute or ".." paths, no symlink or hard link that leads out
// of the tree, no devices or fifos, and bounded size and entry count.
// Archives whose entries all sit under one top directory, as GitHub's tarball
// endpoint returns them, have that directory stripped.
//
// This package must not import other sluice packages; it uses the standard
// library only.
package source
