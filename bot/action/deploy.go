package action

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/sluicehq/sluice/rollout"
	"github.com/sluicehq/sluice/rollout/manifest"
	"github.com/sluicehq/sluice/rollout/source"
)

// pollInterval is how often a waiting deploy asks for the version's status.
const pollInterval = 300 * time.Millisecond

// ReasonTimeout titles the annotation of a deploy still running when the
// timeout input ran out (the engine's own reasons title the others).
const ReasonTimeout = "Timeout"

// sourceDir resolves the source input against the workspace and checks it
// holds a sluice.yaml. rel is the directory as a repository path, to place
// annotations on the manifest ("" when it lies outside the workspace).
func (s *step) sourceDir() (dir, rel string, err error) {
	dir = s.in.Source
	base := s.r.Workspace
	if base == "" {
		if base, err = os.Getwd(); err != nil {
			return "", "", fmt.Errorf("find the working directory: %w", err)
		}
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(base, dir)
	}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "", "", &InputError{"source", fmt.Sprintf("names %s, which does not exist (did the job check out the repository?)", s.in.Source)}
	case err != nil:
		return "", "", fmt.Errorf("source %s: %w", s.in.Source, err)
	case !fi.IsDir():
		return "", "", &InputError{"source", fmt.Sprintf("names %s, which is not a directory", s.in.Source)}
	}
	if _, err := os.Stat(filepath.Join(dir, manifest.FileName)); err != nil {
		return "", "", &InputError{"source", fmt.Sprintf("names %s, which has no %s at its root", s.in.Source, manifest.FileName)}
	}
	if r, err := filepath.Rel(base, dir); err == nil && !strings.HasPrefix(r, "..") {
		rel = filepath.ToSlash(r)
	}
	return dir, rel, nil
}

// serviceName is the service input or, when it is empty, the one service
// the manifest declares.
func (s *step) serviceName(dir, rel string) (string, error) {
	if s.in.Service != "" {
		return s.in.Service, nil
	}
	data, err := os.ReadFile(filepath.Join(dir, manifest.FileName))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", manifest.FileName, err)
	}
	m, err := manifest.Parse(manifest.FileName, data)
	var me *manifest.Error
	if errors.As(err, &me) {
		f := &Failure{}
		for _, p := range me.Problems {
			f.Annotations = append(f.Annotations, problemAnnotation(rel, p.File, p.Line, p.Column, p.Field, p.Message))
		}
		return "", f
	}
	if err != nil {
		return "", fmt.Errorf("parse %s: %w", manifest.FileName, err)
	}
	if len(m.Services) != 1 {
		names := make([]string, len(m.Services))
		for i, sv := range m.Services {
			names[i] = sv.Name
		}
		return "", &InputError{"service", fmt.Sprintf("is required: %s declares %d services (%s)", manifest.FileName, len(names), strings.Join(names, ", "))}
	}
	return m.Services[0].Name, nil
}

// problemAnnotation places a manifest problem on its line of the
// repository's file.
func problemAnnotation(rel, file string, line, col int, field, msg string) Annotation {
	if field != "" {
		msg = field + ": " + msg
	}
	if rel != "" {
		file = path.Join(rel, file)
	}
	return Annotation{Level: "error", Title: "InvalidManifest", File: file, Line: line, Col: col, Message: msg}
}

// origin says the change comes from this workflow run.
func (s *step) origin() rollout.Origin {
	return rollout.Origin{Via: rollout.ViaAction, Actor: s.r.Actor, URL: s.r.RunURL(), Ref: s.r.SHA, Repo: s.r.Repository}
}

// deploy is deploy mode: pack, deploy, wait, set a canary's traffic,
// report.
func (s *step) deploy(ctx context.Context) error {
	dir, rel, err := s.sourceDir()
	if err != nil {
		return err
	}
	service, err := s.serviceName(dir, rel)
	if err != nil {
		return err
	}
	var archive bytes.Buffer
	if err := source.Pack(dir, &archive); err != nil {
		return fmt.Errorf("pack %s: %w", s.in.Source, err)
	}
	origin := s.origin()
	v, err := s.eng.Deploy(ctx, rollout.DeployRequest{Service: service, Archive: archive.Bytes(), Strategy: s.in.Strategy, Origin: origin})
	if re, ok := rollout.AsError(err); ok && len(re.Problems) > 0 {
		f := &Failure{}
		for _, p := range re.Problems {
			f.Annotations = append(f.Annotations, problemAnnotation(rel, p.File, p.Line, p.Column, p.Field, p.Message))
		}
		return f
	}
	if err != nil {
		return s.serverError(err)
	}
	s.log.Info("deploy started", "service", service, "version", v.Name, "strategy", string(s.in.Strategy))
	fmt.Fprintf(s.cfg.Stdout, "sluice: deploying %s as %s (%s)\n", service, v.Name, s.in.Strategy)

	rep := deployReport{service: service, version: v.Name, strategy: s.in.Strategy, wait: s.in.Wait}
	var st rollout.ServiceStatus
	if s.in.Wait {
		st, err = s.waitVersion(ctx, service, v.Name)
		if errors.Is(err, context.DeadlineExceeded) {
			rep.timedOut = s.in.Timeout
		} else if err != nil {
			return s.serverError(err)
		}
	} else if st, err = s.eng.Status(ctx, service); err != nil {
		return s.serverError(err)
	}
	rep.status = st
	var trafficErr error
	if cur, ok := findVersion(st, v.Name); ok && cur.Status == rollout.StatusNormal && s.in.Traffic > 0 {
		if st, trafficErr = s.shareTraffic(ctx, st, v.Name, origin); trafficErr == nil {
			rep.status = st
		}
	}
	cur, _ := findVersion(rep.status, v.Name)
	s.writeOutputs(Output{"version", v.Name}, Output{"url", cur.URL}, Output{"status", string(cur.Status)})
	s.writeSummary(rep.markdown())
	fmt.Fprintf(s.cfg.Stdout, "sluice: %s is %s %s\n", v.Name, cur.Status, cur.URL)
	switch {
	case rep.timedOut > 0:
		return &Failure{[]Annotation{{Level: "error", Title: ReasonTimeout,
			Message: fmt.Sprintf("%s is still %s after %s — raise the timeout input, or see the version's logs with `sluice logs %s %s`", v.Name, cur.Status, s.in.Timeout, service, v.Name)}}}
	case s.in.Wait && cur.Status != rollout.StatusNormal:
		return &Failure{[]Annotation{reasonAnnotation(cur)}}
	case trafficErr != nil:
		return fmt.Errorf("%s is normal but its traffic was not set: %w", v.Name, s.serverError(trafficErr))
	}
	return nil
}

// reasonAnnotation is the ::error of a failed version: its reason code as
// the title, the detail's first line and the suggestion as the message.
func reasonAnnotation(v rollout.VersionStatus) Annotation {
	code := string(v.Reason.Code)
	if code == "" {
		code = string(v.Status)
	}
	msg := firstLine(v.Reason.Detail)
	if msg == "" {
		msg = fmt.Sprintf("%s is %s", v.Name, v.Status)
	}
	if v.Reason.Suggestion != "" {
		msg += " — " + firstLine(v.Reason.Suggestion)
	}
	return Annotation{Level: "error", Title: code, Message: msg}
}

// waitVersion polls until the version is no longer creating or the
// timeout passes (context.DeadlineExceeded, with the last status).
func (s *step) waitVersion(ctx context.Context, service, version string) (rollout.ServiceStatus, error) {
	deadline := time.Now().Add(s.in.Timeout)
	for {
		st, err := s.eng.Status(ctx, service)
		if err != nil {
			return st, err
		}
		v, ok := findVersion(st, version)
		if !ok {
			return st, fmt.Errorf("the server lost track of %s", version)
		}
		if v.Status != rollout.StatusCreating {
			return st, nil
		}
		if time.Now().After(deadline) {
			return st, context.DeadlineExceeded
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(pollInterval):
		}
	}
}

// shareTraffic splits {stable: 100-N, canary: N}, as /canary N% does.
func (s *step) shareTraffic(ctx context.Context, st rollout.ServiceStatus, version string, origin rollout.Origin) (rollout.ServiceStatus, error) {
	split := map[string]int{version: s.in.Traffic}
	if s.in.Traffic < 100 {
		if st.Stable == "" || st.Stable == version {
			return st, fmt.Errorf("service %s has no stable version to share traffic with: deploy one with strategy full first", st.Name)
		}
		split[st.Stable] = 100 - s.in.Traffic
	}
	return s.eng.Traffic(ctx, st.Name, rollout.TrafficRequest{Split: split}, origin)
}

func findVersion(st rollout.ServiceStatus, name string) (rollout.VersionStatus, bool) {
	for _, v := range st.Versions {
		if v.Name == name {
			return v, true
		}
	}
	return rollout.VersionStatus{}, false
}
