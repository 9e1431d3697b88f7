// Package rollout is sluice's domain: services, their immutable versions,
// traffic policies and the history log, and the Engine that carries out
// every operation of the spec (deploy, traffic, route, predict, promote,
// rollback, redeploy, abort, retire) the same way for every front door.
//
// It owns the model (Service, Version, Event, Origin and their persisted
// enums), the operations' errors (Error, with stable codes the HTTP edge
// maps to statuses) and the consumer interfaces of what it drives: Store
// (implemented by package store in bbolt), Router (the data path, fed a
// routing.Table), DataPlane (a gateway outside sluice) and, through package
// runtime, the drivers that build and run versions. Operations on one
// service are serialized where they touch its policy; builds and starts run
// in the background and apply their outcome under that serialization; every
// change is committed to the Store before it is reported as done.
//
// Arrows point one way: front doors (bot and its subpackages) and cmd
// import rollout; rollout imports its leaf packages (policy, routing,
// reason, names, contain), manifest, source and the runtime interface, and
// never echo, go-github, bbolt, Prometheus, the router or a runtime driver:
// cmd chooses those and wires them in. internal/layout's test enforces it.
package rollout
