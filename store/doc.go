// Package store is the bbolt implementation of rollout.Store: it owns the
// on-disk layout of sluice.db, its schema version and its migrations.
//
// It imports rollout (for the types and the interface it implements) and
// bbolt, nothing else of sluice: no front door (echo, go-github, the API or
// the bot), and not the router or the runtime drivers. The engine is the only
// writer; it decides what to write, the store only persists it.
//
// # Bucket tree
//
//	meta/
//	    schema                      → uint64 big-endian: the schema version
//	    id                          → 16 hex digits: the file's identity (schema 4)
//	services/
//	    <service name>/
//	        record                  → JSON rollout.Service
//	        versions/
//	            <seq, uint64 BE>    → JSON rollout.Version
//	        names/
//	            <version name>      → <seq, uint64 BE>
//	events/                         (bucket sequence = last Event.Seq given)
//	    <seq, uint64 BE>            → JSON rollout.Event
//	tokens/                         (schema 3)
//	    <id>                        → JSON rollout.Token + "sha256" (hex); never the token text
//	tokens_by_hash/                 (schema 3)
//	    <SHA-256, 32 bytes>         → <id>
//	journal/                        (created on first write)
//	    <bucket>/                   front doors' own records (rollout.Journal):
//	        <key>                   → opaque bytes; Append keys are 16 hex digits
//	events_by_service/              (schema 2)
//	    <service name>/
//	        <seq, uint64 BE>        → empty
//
// Keys are sortable: versions are keyed by their Seq and events by their
// global sequence, both as 8-byte big-endian integers, so a cursor walks
// them in creation order. Version(service, name) looks the name up in the
// small names/ index rather than parsing "<service>-NNN": the name format
// belongs to the engine, not to the store.
//
// events_by_service is an index rather than a filter over events/: a page of
// one service's history then costs one seek per returned event, instead of
// a scan of every other service's events that precede it, which grows
// without bound because the log is never rewritten. Entries hold no value;
// the event itself lives once, in events/.
//
// # Values and transactions
//
// Values are JSON, using the tags of the rollout types. Everything read is
// decoded inside its transaction, which copies it; no slice handed out by
// bbolt is used after its transaction ends.
//
// # Schema and migrations
//
// meta/schema holds the version of the layout above. Open applies, in
// order, every migration newer than it, each in its own transaction that
// also records its version, so a failure leaves the file at the last
// completed step. A file whose schema is newer than this code knows is
// refused (ErrSchemaTooNew) rather than guessed at.
//
// # Safety
//
// The file holds every service's environment, secrets included: it is
// created 0600 and restricted to 0600 on open. Open walks every bucket
// before use, so a damaged file is reported once, at start, as ErrCorrupt
// naming `bbolt check` and the backup (WithBackup keeps sluice.db.bak, a
// copy taken at each successful open before migrations), and never as a
// panic while serving. An empty file is refused (ErrEmpty) when the caller
// knows the store held data (WithExpectData): bbolt would otherwise
// initialize it, and sluice would forget every service without a word.
package store
