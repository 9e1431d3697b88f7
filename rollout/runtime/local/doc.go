// Package local implements runtime.Runtime with child processes on this
// machine.
//
// It owns the on-disk layout under its data directory:
//
//	<dataDir>/versions/<store>/<version>/gen-<N>/src    work directory of generation N (source + build output)
//	<dataDir>/versions/<store>/<version>/gen-<N>/built  marker written once generation N is fully built
//	<dataDir>/versions/<store>/<version>/logs/build.log build output of every generation, appended
//	<dataDir>/versions/<store>/<version>/logs/run-<N>-<i>.log output of instance i of generation N
//	<dataDir>/home                                      HOME of children running as another user
//
// Logs are rotated past the log limit (one old copy, <log>.1); a
// successful Start removes the version's older generations that run no
// instances and the service's version directories beyond the newest
// WithKeepVersions, except those with instances running. The version
// directory's "service" file names its service.
//
// <store> is the SetStoreID key (absent without it): version names are
// unique within one store only, so a store started afresh must not find a
// previous store's build under the same name.
//
// Builds and instances run as the WithRunAs identity (the data directory,
// the logs and sluice's files stay out of their reach) and, when sluice is
// root and the kernel allows it, under an init of their own in new PID and
// mount namespaces (see RunNamespaceInit). They run with /bin/sh -c in
// their own process group, with a minimal inherited environment and the marker variable SLUICE_OWNER set to
// the absolute data directory, so that Cleanup can find processes a killed
// sluice left behind. Instances listen on a free 127.0.0.1 port passed as
// $PORT, are health-checked over HTTP, and are restarted with exponential
// backoff when they exit.
//
// Linux is the target (process groups, /proc); on other Unix systems
// everything but Cleanup works.
//
// This package may import only the standard library, rollout/runtime and
// rollout/source; it must not import rollout, the router, the store or any
// front door.
package local
