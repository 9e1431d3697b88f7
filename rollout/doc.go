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
// # Policy operations
//
// Every policy operation (traffic, route, unroute, promote, rollback,
// abort), an in-place redeploy's acceptance and the engine's own work
// that sets a policy (a deploy's outcome, an automatic canary's step)
// have a pure decide step (decidePolicy, decideRedeploy, decideDeployed,
// decideCanaryStep): from the loaded service, its versions,
// the request and the time it returns a refusal or a plan, the next state
// (policy, stable history, version statuses and idle times, the events
// that record them) and a list of typed actions: start a stopped
// version's recorded configuration, apply the policy to the data plane,
// commit, publish the routing table. Deciding does no I/O.
//
// The engine carries a plan out (carry) with optimistic concurrency: lock the
// service, load, decide, unlock; run the slow actions (starts that wait
// for health checks, the data plane's ApplyPolicy) with the caller's ctx
// and no lock held; lock again, load again and decide again. If that plan
// needs nothing more it is committed in one transaction and published
// before the lock is released; otherwise (another operation changed the
// service meanwhile) the engine goes round again, at most a few times,
// then refuses with version_busy. So reads and other operations on the
// service never wait for a slow start. When there is a data plane, one
// policy operation per service at a time runs its rounds, from decide to
// commit (a lock taken before the service lock and never while holding
// it), so the data plane never routes by a policy that another commit
// went past; deploys, redeploys and reads still go on meanwhile.
//
// The guarantees: an *Error, or an error wrapping ctx's, means nothing
// was committed, what the call started is stopped again and the data
// plane routes by the committed policy; when the call returns nil the new
// policy routes; a policy naming a retired version starts it and routes
// to it only once it is healthy. A deploy whose policy the data plane
// refuses fails (DataPlaneFailed) and its instances are stopped; a canary
// step is judged with no lock held and does nothing if a person moved the
// canary's traffic meanwhile.
//
// A request's ctx bounds what the caller waits for (starts, the data
// plane, drains it waits on). Work the engine goes on with after a call
// returns (builds and starts after Deploy and Redeploy return, a deploy's
// outcome, starts after Recover) uses the engine's own lifetime ctx,
// which Close cancels.
//
// Arrows point one way: front doors (bot and its subpackages) and cmd
// import rollout; rollout imports its leaf packages (policy, routing,
// reason, names, contain), manifest, source and the runtime interface, and
// never echo, go-github, bbolt, Prometheus, the router or a runtime driver:
// cmd chooses those and wires them in. internal/layout's test enforces it.
package rollout
