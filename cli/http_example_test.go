package cli

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The example of examples/http, run as its users run it: its server built
// and started, its table seeded by its seed command, and the job run by
// the stock binary (the test binary running cli.Main(&cli.Program{})),
// with no processing function compiled in.
func TestHTTPExample(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	server := filepath.Join(dir, "odd-server")
	if out, err := exec.Command("go", "build", "-o", server, "../examples/http").CombinedOutput(); err != nil {
		t.Fatalf("build examples/http: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	const secret = "example-secret-0123456789"
	env := append(os.Environ(), "PAMPA_HTTP_SECRET="+secret, envTestProgram+"="+stockProgram)
	srv := exec.Command(server, addr)
	srv.Env = env
	srvOut := &syncBuffer{}
	srv.Stdout, srv.Stderr = srvOut, srvOut
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the example's server did not listen on %s:\n%s", addr, srvOut.String())
		}
	}
	data, err := os.ReadFile("../examples/http/pampa.yaml")
	if err != nil {
		t.Fatal(err)
	}
	config := strings.NewReplacer("http://127.0.0.1:8099/odd", "http://"+addr+"/odd", "../../pampa-demo/http.db", "http.db").Replace(string(data))
	if !strings.Contains(config, addr) || !strings.Contains(config, "url: http.db") {
		t.Fatalf("examples/http/pampa.yaml no longer reads as this test expects:\n%s", data)
	}
	if err := os.WriteFile(filepath.Join(dir, "pampa.yaml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir, cmd.Env = dir, env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s\nserver:\n%s", name, strings.Join(args, " "), err, out, srvOut.String())
		}
		return string(out)
	}
	run(server, "seed", "300", "http.db")
	run(os.Args[0], "setup")
	run(os.Args[0], "run", "--until-done", "--workers", "4", "--concurrency", "4", "--delay", "50ms", "--progress=false", "--log=false")
	ex := &example{t: t, dir: dir}
	ex.check(300)
}
