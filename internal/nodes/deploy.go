package nodes

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/pampa-go/pampa/internal/config"
	"github.com/pkg/sftp"
)

// DeploySpec is what to deploy.
type DeploySpec struct {
	// Binary is the local path of the program to run on the node: a Linux
	// executable for the node's architecture built with Pampa (the user's
	// own program, or the stock pampa).
	Binary string
	// Program is its file name on the node. Default: Binary's base name.
	Program string
	// Version is the program's version, recorded and shown by status.
	Version string
	// Config is the config file's content, uploaded as pampa.yaml and
	// passed to workers with --config; nil to upload none (the program
	// defines its cluster in Go).
	Config []byte
	// Env holds environment variables for the node's workers and agent,
	// uploaded to the release's env file (mode 0600). Values are secrets:
	// only names are ever shown.
	Env []EnvVar
	// Files are shipped in the release too, each at its Path, with its
	// permission bits (directories are made writable by their owner, so
	// that old releases can be pruned). Made by [PlanFiles].
	Files []ReleaseFile
	// Keep is how many releases to keep on the node, the current one
	// included. Default 3.
	Keep int
	// By says who deployed, for the record. Default user@host.
	By string
}

// EnvVar is one environment variable.
type EnvVar struct {
	Name  string
	Value Secret
}

// Deployed is the outcome of a deploy.
type Deployed struct {
	Release Release `json:"release"`
	// Previous is the release that was current before, "" for none.
	Previous string `json:"previous,omitempty"`
	// Unchanged is set when the same release was already current.
	Unchanged bool `json:"unchanged,omitempty"`
	// Reused is set when the release was already on the node, uploaded
	// by an earlier deploy, and only became current again.
	Reused bool `json:"reused,omitempty"`
	// Pruned lists old releases removed.
	Pruned []string `json:"pruned,omitempty"`
	Dir    string   `json:"dir"`
}

// releaseID names a release after its version and the digest of what it
// holds, so that deploying the same files again is recognised.
func releaseID(version string, digest []byte) string {
	v := strings.Map(func(r rune) rune {
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9', r == '.', r == '_', r == '-':
			return r
		}
		return '_'
	}, version)
	if v == "" || strings.HasPrefix(v, ".") {
		v = "v" + v
	}
	if len(v) > 40 {
		v = v[:40]
	}
	return v + "-" + hex.EncodeToString(digest)[:12]
}

// elfArch maps an ELF machine to `uname -m` names.
func elfArch(m elf.Machine) []string {
	switch m {
	case elf.EM_X86_64:
		return []string{"x86_64", "amd64"}
	case elf.EM_AARCH64:
		return []string{"aarch64", "arm64"}
	case elf.EM_386:
		return []string{"i386", "i486", "i586", "i686"}
	case elf.EM_ARM:
		return []string{"armv6l", "armv7l", "armv8l", "arm"}
	case elf.EM_RISCV:
		return []string{"riscv64"}
	case elf.EM_PPC64:
		return []string{"ppc64le", "ppc64"}
	case elf.EM_S390:
		return []string{"s390x"}
	case elf.EM_LOONGARCH:
		return []string{"loongarch64"}
	}
	return nil
}

// checkBinary opens the binary and checks that it is a Linux executable.
func checkBinary(name string) (*os.File, elf.Machine, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, 0, err
	}
	ef, err := elf.NewFile(f)
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("%s is not a Linux executable (build it with GOOS=linux): %w", name, err)
	}
	if ef.Type != elf.ET_EXEC && ef.Type != elf.ET_DYN {
		f.Close()
		return nil, 0, fmt.Errorf("%s is not an executable", name)
	}
	return f, ef.Machine, nil
}

// WithDefaults returns a copy of s with Keep and Program filled in.
func (s DeploySpec) WithDefaults() DeploySpec {
	if s.Keep <= 0 {
		s.Keep = 3
	}
	if s.Program == "" {
		s.Program = path.Base(strings.ReplaceAll(s.Binary, `\`, "/"))
	}
	return s
}

// Validate checks a spec after defaults, touching no node: callers that
// deploy to several nodes check every spec before the first upload.
func (s *DeploySpec) Validate() error {
	if !validFileName(s.Program) {
		return fmt.Errorf("program name %q: want a plain file name", s.Program)
	}
	for _, e := range s.Env {
		if !config.IsEnvName(e.Name) {
			return fmt.Errorf("environment variable name %q: want letters, digits and _, not starting with a digit", e.Name)
		}
		if strings.ContainsAny(string(e.Value), "\n\r\x00") {
			return fmt.Errorf("environment variable %s: its value holds a line break or NUL, which the env file cannot carry", e.Name)
		}
	}
	return checkFiles(s.Files, s.Program)
}

// Deploy uploads a release to the node and makes it current, atomically:
// the files go to releases/.incoming-<random>, which is renamed to
// releases/<release> once complete and synced; then a new symlink is
// renamed over `current`. An interrupted deploy leaves `current` as it
// was, and running workers are not touched: `restart` moves them to the
// new release.
func (c *Conn) Deploy(ctx context.Context, spec DeploySpec) (*Deployed, error) {
	spec = spec.WithDefaults()
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	bin, machine, err := checkBinary(spec.Binary)
	if err != nil {
		return nil, err
	}
	defer bin.Close()

	// The node's architecture must run the binary.
	uname, err := c.Output(ctx, []string{"uname", "-s", "-m"}, nil)
	if err != nil {
		return nil, fmt.Errorf("check the node's system: %w", err)
	}
	f := strings.Fields(string(uname))
	if len(f) != 2 || f[0] != "Linux" {
		return nil, fmt.Errorf("the node runs %q; Pampa's workers need Linux", strings.TrimSpace(string(uname)))
	}
	arch := f[1]
	if !slices.Contains(elfArch(machine), arch) {
		return nil, fmt.Errorf("%s is built for %s, but the node is %s: build it for the node (GOOS=linux GOARCH=...) and pass it with --binary", spec.Binary, machine, arch)
	}

	// Digest everything the release holds.
	h := sha256.New()
	binSum := sha256.New()
	if _, err := io.Copy(io.MultiWriter(h, binSum), bin); err != nil {
		return nil, fmt.Errorf("read %s: %w", spec.Binary, err)
	}
	envFile := envFileContent(spec.Env)
	fmt.Fprintf(h, "\x00program=%s\x00config=%x\x00env=%x", spec.Program, sha256.Sum256(spec.Config), sha256.Sum256(envFile))
	digestFiles(h, spec.Files)
	rel := Release{
		ID: releaseID(spec.Version, h.Sum(nil)), Version: spec.Version, Program: spec.Program,
		SHA256: hex.EncodeToString(binSum.Sum(nil)), Arch: arch,
		DeployedAt: time.Now().UTC().Truncate(time.Second), DeployedBy: spec.By,
	}
	if spec.Config != nil {
		rel.Config = configName
	}
	for _, e := range spec.Env {
		rel.EnvNames = append(rel.EnvNames, e.Name)
	}
	if rel.DeployedBy == "" {
		rel.DeployedBy = localIdentity()
	}

	var out *Deployed
	err = c.bounded(ctx, "deploy", func(ctx context.Context) error {
		var err error
		out, err = c.deploy(ctx, spec, bin, envFile, rel)
		return err
	})
	return out, err
}

func (c *Conn) deploy(ctx context.Context, spec DeploySpec, bin *os.File, envFile []byte, rel Release) (*Deployed, error) {
	sc, err := c.SFTP()
	if err != nil {
		return nil, err
	}
	dir, _, err := c.Dir()
	if err != nil {
		return nil, err
	}
	releases := path.Join(dir, releasesDir)
	if err := sc.MkdirAll(releases); err != nil {
		return nil, fmt.Errorf("create %s: %w", releases, err)
	}
	out := &Deployed{Release: rel, Dir: dir}
	if cur, err := currentRelease(sc, dir); err == nil {
		out.Previous = cur.ID
	}
	final := path.Join(releases, rel.ID)
	if old, err := readManifest(sc, final); err == nil && old.SHA256 == rel.SHA256 {
		// Already uploaded: keep its record of when it first came.
		out.Release, out.Reused = *old, true
		out.Unchanged = out.Previous == rel.ID
	} else {
		if err := c.upload(ctx, sc, releases, final, spec, bin, envFile, rel); err != nil {
			return nil, err
		}
	}
	if !out.Unchanged {
		if err := switchCurrent(sc, dir, rel.ID); err != nil {
			return nil, err
		}
	}
	out.Pruned = prune(sc, dir, spec.Keep, rel.ID)
	return out, nil
}

// upload writes the release's files to an incoming directory and renames
// it into place.
func (c *Conn) upload(ctx context.Context, sc *sftp.Client, releases, final string, spec DeploySpec, bin *os.File, envFile []byte, rel Release) error {
	incoming := path.Join(releases, incomingPfx+randomHex(6))
	if err := sc.Mkdir(incoming); err != nil {
		return fmt.Errorf("create %s: %w", incoming, err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = sc.RemoveAll(incoming)
		}
	}()
	if _, err := bin.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := c.putFile(ctx, sc, path.Join(incoming, spec.Program), bin, 0o755); err != nil {
		return err
	}
	if spec.Config != nil {
		if err := c.putFile(ctx, sc, path.Join(incoming, configName), strings.NewReader(string(spec.Config)), 0o600); err != nil {
			return err
		}
	}
	if err := c.putFile(ctx, sc, path.Join(incoming, envName), strings.NewReader(string(envFile)), 0o600); err != nil {
		return err
	}
	if err := c.putFiles(ctx, sc, incoming, spec.Files); err != nil {
		return err
	}
	manifest, _ := json.MarshalIndent(rel, "", "  ")
	if err := c.putFile(ctx, sc, path.Join(incoming, manifestName), strings.NewReader(string(manifest)+"\n"), 0o644); err != nil {
		return err
	}
	if err := sc.Rename(incoming, final); err != nil {
		// Another deploy of the same release may have won the race.
		if old, rerr := readManifest(sc, final); rerr == nil && old.SHA256 == rel.SHA256 {
			return nil
		}
		return fmt.Errorf("move the upload into place as %s: %w", final, err)
	}
	ok = true
	return nil
}

// putFiles uploads release files into dir, in order (a directory before
// what it holds). A file that changed since it was planned fails the
// upload: the release's digest would not describe it.
func (c *Conn) putFiles(ctx context.Context, sc *sftp.Client, dir string, files []ReleaseFile) error {
	for _, f := range files {
		name := path.Join(dir, f.Path)
		if f.Mode.IsDir() {
			if err := sc.Mkdir(name); err != nil {
				return fmt.Errorf("create %s: %w", name, err)
			}
			if err := sc.Chmod(name, f.Mode.Perm()|0o700); err != nil {
				return fmt.Errorf("chmod %s: %w", name, err)
			}
			continue
		}
		if err := c.putLocalFile(ctx, sc, name, f); err != nil {
			return err
		}
	}
	return nil
}

// putLocalFile uploads one planned file, checking its size and digest.
func (c *Conn) putLocalFile(ctx context.Context, sc *sftp.Client, name string, f ReleaseFile) error {
	local, err := os.Open(f.Local)
	if err != nil {
		return err
	}
	defer local.Close()
	h := sha256.New()
	cr := &countingReader{r: io.TeeReader(local, h)}
	if err := c.putFile(ctx, sc, name, cr, f.Mode.Perm()); err != nil {
		return err
	}
	if cr.n != f.Size || hex.EncodeToString(h.Sum(nil)) != f.SHA256 {
		return fmt.Errorf("%s changed while it was deployed: deploy again", f.Local)
	}
	return nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.n += int64(n)
	return n, err
}

// putFile uploads r to name with mode, synced to disk before it returns.
func (c *Conn) putFile(ctx context.Context, sc *sftp.Client, name string, r io.Reader, mode os.FileMode) error {
	if c.hookUpload != nil {
		c.hookUpload(name)
	}
	f, err := sc.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	defer f.Close()
	if err := f.Chmod(mode); err != nil {
		return fmt.Errorf("chmod %s: %w", name, err)
	}
	if _, err := f.ReadFrom(&ctxReader{ctx: ctx, r: r}); err != nil {
		return fmt.Errorf("upload %s: %w", name, err)
	}
	// fsync@openssh.com: the rename that publishes the release must not
	// reach the disk before the data does. Servers without it are still
	// served, with the rename's ordering only.
	if err := f.Sync(); err != nil && !isUnsupported(err) {
		return fmt.Errorf("sync %s: %w", name, err)
	}
	return f.Close()
}

func isUnsupported(err error) bool {
	var se *sftp.StatusError
	return errors.As(err, &se) && se.FxCode() == sftp.ErrSSHFxOpUnsupported
}

// ctxReader stops a copy when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r *ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

// switchCurrent points `current` at a release: a new symlink is made
// under a temporary name and renamed over the old one (posix-rename),
// which replaces it in one step.
func switchCurrent(sc *sftp.Client, dir, id string) error {
	if _, ok := sc.HasExtension("posix-rename@openssh.com"); !ok {
		return errors.New("the node's SFTP server lacks posix-rename@openssh.com, needed to switch releases atomically")
	}
	tmp := path.Join(dir, currentLink+incomingPfx+randomHex(6))
	if err := sc.Symlink(path.Join(releasesDir, id), tmp); err != nil {
		return fmt.Errorf("symlink %s: %w", tmp, err)
	}
	if err := sc.PosixRename(tmp, path.Join(dir, currentLink)); err != nil {
		_ = sc.Remove(tmp)
		return fmt.Errorf("switch %s to %s: %w", path.Join(dir, currentLink), id, err)
	}
	return nil
}

// currentRelease reads the release `current` points at.
func currentRelease(sc *sftp.Client, dir string) (*Release, error) {
	target, err := sc.ReadLink(path.Join(dir, currentLink))
	if err != nil {
		return nil, err
	}
	if !path.IsAbs(target) {
		target = path.Join(dir, target)
	}
	return readManifest(sc, target)
}

func readManifest(sc *sftp.Client, relDir string) (*Release, error) {
	data, err := readAll(sc, path.Join(relDir, manifestName))
	if err != nil {
		return nil, err
	}
	var rel Release
	if err := json.Unmarshal(data, &rel); err != nil {
		return nil, fmt.Errorf("%s: %w", path.Join(relDir, manifestName), err)
	}
	return &rel, nil
}

// prune removes all but the newest keep releases (never the current one)
// and incoming directories left by deploys interrupted over an hour ago.
func prune(sc *sftp.Client, dir string, keep int, current string) []string {
	releases := path.Join(dir, releasesDir)
	entries, err := sc.ReadDir(releases)
	if err != nil {
		return nil
	}
	type rel struct {
		name string
		at   time.Time
	}
	var rels []rel
	var pruned []string
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, incomingPfx) {
			if time.Since(e.ModTime()) > time.Hour {
				_ = sc.RemoveAll(path.Join(releases, name))
			}
			continue
		}
		if name == current || !e.IsDir() {
			continue
		}
		at := e.ModTime()
		if m, err := readManifest(sc, path.Join(releases, name)); err == nil {
			at = m.DeployedAt
		}
		rels = append(rels, rel{name, at})
	}
	sort.Slice(rels, func(i, j int) bool { return rels[i].at.After(rels[j].at) })
	for i, r := range rels {
		if i < keep-1 {
			continue
		}
		if err := sc.RemoveAll(path.Join(releases, r.name)); err == nil {
			pruned = append(pruned, r.name)
		}
	}
	// Leftover temporary symlinks of interrupted switches.
	if entries, err := sc.ReadDir(dir); err == nil {
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), currentLink+incomingPfx) && time.Since(e.ModTime()) > time.Hour {
				_ = sc.Remove(path.Join(dir, e.Name()))
			}
		}
	}
	return pruned
}

// envFileContent renders the env file: NAME=VALUE lines.
func envFileContent(env []EnvVar) []byte {
	var b strings.Builder
	b.WriteString("# Environment of this release's workers, written by `pampa nodes deploy`.\n")
	for _, e := range env {
		b.WriteString(e.Name + "=" + string(e.Value) + "\n")
	}
	return []byte(b.String())
}

func validFileName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\\\x00\n")
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func localIdentity() string {
	host, _ := os.Hostname()
	u := os.Getenv("USER")
	if u == "" {
		u = os.Getenv("LOGNAME")
	}
	if u == "" {
		return host
	}
	return u + "@" + host
}

// readAll reads a whole remote file, /proc files (which claim size 0)
// included.
func readAll(sc *sftp.Client, name string) ([]byte, error) {
	f, err := sc.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, 16<<20))
}

// sftpRead adapts readAll to readFunc, mapping "no such file" to
// fs.ErrNotExist.
func sftpRead(c *sftp.Client) readFunc {
	return func(name string) ([]byte, error) {
		data, err := readAll(c, name)
		if err != nil && isNotExist(err) {
			return nil, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
		}
		return data, err
	}
}

func isNotExist(err error) bool {
	var se *sftp.StatusError
	if errors.As(err, &se) && se.FxCode() == sftp.ErrSSHFxNoSuchFile {
		return true
	}
	return errors.Is(err, fs.ErrNotExist)
}
