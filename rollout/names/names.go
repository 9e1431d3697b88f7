// Package names holds the one definition of what may name a service and
// what a version's name looks like, shared by sluice.yaml's parser, the
// engine, the API's tokens and the comment grammar so that none of them
// accepts a name another refuses.
//
// It is a leaf: it imports the standard library only.
package names

import "regexp"

// MaxServiceLength is the longest service name. A service name is a DNS
// label (at most 63 characters) in every URL sluice prints, and so is each
// of its versions' names, "<service>-NNN" in "<version>.<service>.<base>";
// 40 leaves a version's name room for its sequence number and the
// kubernetes runtime's suffixes within 63.
const MaxServiceLength = 40

var (
	serviceRE = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)
	versionRE = regexp.MustCompile(`^[a-z][-a-z0-9]*-\d{3,}$`)
)

// ServiceShape reports whether s is shaped like a service name: lowercase
// letters, digits and '-', starting with a letter and not ending with '-'.
// It does not check the length (see MaxServiceLength, ValidService), so
// callers can say which rule a name breaks.
func ServiceShape(s string) bool { return serviceRE.MatchString(s) }

// ValidService reports whether s can name a service: its shape and its
// length.
func ValidService(s string) bool { return len(s) <= MaxServiceLength && ServiceShape(s) }

// LooksLikeVersion reports whether s is shaped like a version's name,
// "<service>-NNN" (three or more digits).
func LooksLikeVersion(s string) bool { return versionRE.MatchString(s) }
