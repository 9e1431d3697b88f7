package githubtest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"net/http"
	"path"
	"sort"
	"strings"
	"time"
)

// archivePrefix is where tarball redirects point (GitHub's codeload).
const archivePrefix = "/_tarballs/"

// serveArchive answers GET /_tarballs/{owner}/{repo}/legacy.tar.gz/{sha}?token=...
// with the commit's tarball. Like codeload it needs no Authorization
// header, only the token of the redirect it came from.
func (s *Server) serveArchive(r *http.Request) reply {
	rest := strings.TrimPrefix(r.URL.Path, archivePrefix)
	parts := strings.Split(rest, "/")
	if len(parts) != 4 || parts[2] != "legacy.tar.gz" || r.URL.Query().Get("token") != s.archiveToken {
		return notFound()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	repo := s.repos[strings.ToLower(parts[0]+"/"+parts[1])]
	if repo == nil || repo.commits[parts[3]] == nil {
		return notFound()
	}
	cm := repo.commits[parts[3]]
	b, err := tarball(repo.owner+"-"+repo.name+"-"+cm.sha[:7], cm)
	if err != nil {
		s.t.Errorf("githubtest: build tarball: %v", err)
		return errReply(http.StatusInternalServerError, "tarball")
	}
	return reply{status: http.StatusOK, raw: b, header: http.Header{
		"Content-Type":        {"application/x-gzip"},
		"Content-Disposition": {fmt.Sprintf("attachment; filename=%s-%s-%s.tar.gz", repo.owner, repo.name, cm.sha[:7])},
	}}
}

// tarball builds a gzip'd tar shaped like GitHub's: a pax global header
// whose comment is the commit SHA, then everything under top/, with a
// directory entry before the files in it. A file whose content starts
// with "#!" is executable.
func tarball(top string, cm *commitRec) ([]byte, error) {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	mtime := cm.at
	if mtime.IsZero() {
		mtime = time.Unix(0, 0)
	}
	if err := tw.WriteHeader(&tar.Header{
		Typeflag:   tar.TypeXGlobalHeader,
		Name:       "pax_global_header",
		PAXRecords: map[string]string{"comment": cm.sha},
		Format:     tar.FormatPAX,
	}); err != nil {
		return nil, fmt.Errorf("write global header: %w", err)
	}
	paths := make([]string, 0, len(cm.files))
	for p := range cm.files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	dirs := map[string]bool{}
	var addDir func(d string) error
	addDir = func(d string) error {
		if d == "." || d == "" || dirs[d] {
			return nil
		}
		if err := addDir(path.Dir(d)); err != nil {
			return err
		}
		dirs[d] = true
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: top + "/" + d + "/", Mode: 0o775, ModTime: mtime})
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: top + "/", Mode: 0o775, ModTime: mtime}); err != nil {
		return nil, fmt.Errorf("write top directory: %w", err)
	}
	for _, p := range paths {
		if err := addDir(path.Dir(p)); err != nil {
			return nil, fmt.Errorf("write directory of %s: %w", p, err)
		}
		content := cm.files[p]
		mode := int64(0o664)
		if strings.HasPrefix(content, "#!") {
			mode = 0o775
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: top + "/" + p, Mode: mode, Size: int64(len(content)), ModTime: mtime}); err != nil {
			return nil, fmt.Errorf("write header of %s: %w", p, err)
		}
		if _, err := tw.Write([]byte(content)); err != nil {
			return nil, fmt.Errorf("write %s: %w", p, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close tar: %w", err)
	}
	if err := gz.Close(); err != nil {
		return nil, fmt.Errorf("close gzip: %w", err)
	}
	return buf.Bytes(), nil
}
