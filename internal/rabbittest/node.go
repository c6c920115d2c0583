package rabbittest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// How long a node may take. Generous: on a busy two-core machine a node's
// boot has taken a minute, and rabbitmqctl alone takes seconds to start.
const (
	nodeStartTimeout = 4 * time.Minute
	ctlTimeout       = 3 * time.Minute
	nodeStopTimeout  = 30 * time.Second
)

// Node is a RabbitMQ node of the tests' own, started from the installed
// rabbitmq-server on free loopback ports, with its own configuration file,
// plugins file (the management plugin), data and log directories, Erlang
// node name and cookie. It never touches a broker that was running before:
// the system's configuration pins port 5672, and a Node reads none of it.
//
// A Node's methods may be called from any goroutine, but the tests that
// stop, start or kill it must not run in parallel with tests that use it.
type Node struct {
	// Broker reaches the node: its AMQP URL and management API.
	Broker
	// Name is the node's Erlang name, such as eventsproxy-1a2b3c@localhost.
	Name string
	// AMQPPort, ManagementPort and DistPort are its loopback ports.
	AMQPPort, ManagementPort, DistPort int

	dir  string              // everything of the node's, deleted by Stop
	bin  string              // the directory of rabbitmq-server and rabbitmqctl
	env  []string            // the environment of the node and of rabbitmqctl
	cred *syscall.Credential // the rabbitmq user's, when we are root

	mu     sync.Mutex
	cmd    *exec.Cmd // nil once the process is reaped
	exited error     // why the process ended, once reaped
}

// StartNode starts a node for tb, waits until it serves AMQP and its
// management API, and stops and deletes it when tb ends.
func StartNode(tb testing.TB) *Node {
	tb.Helper()
	n, err := NewNode(randomCookie())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := n.Stop(); err != nil {
			tb.Errorf("stop node %s: %v", n.Name, err)
		}
	})
	return n
}

// NewNode starts a node whose Erlang cookie is cookie (nodes of one cluster
// share theirs), and waits until it serves AMQP and its management API. The
// caller must call Stop.
func NewNode(cookie string) (*Node, error) {
	bin, err := rabbitmqBin()
	if err != nil {
		return nil, err
	}
	// A free port may be taken by someone else before the node binds it;
	// then the node fails to boot, and another set of ports is tried.
	var errs []error
	for range 3 {
		n, err := startNode(bin, cookie)
		if err == nil {
			return n, nil
		}
		errs = append(errs, err)
		if !errors.Is(err, errBootFailed) {
			break
		}
	}
	return nil, errors.Join(errs...)
}

var errBootFailed = errors.New("the node exited while booting")

func startNode(bin, cookie string) (*Node, error) {
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	sweepStale()
	dir, err := os.MkdirTemp("", nodeDirPrefix)
	if err != nil {
		return nil, err
	}
	n := &Node{
		Name:           Unique("eventsproxy-") + "@localhost",
		AMQPPort:       ports[0],
		ManagementPort: ports[1],
		DistPort:       ports[2],
		dir:            dir,
		bin:            bin,
	}
	n.Broker = Broker{
		URL:           fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", n.AMQPPort),
		ManagementURL: fmt.Sprintf("http://guest:guest@127.0.0.1:%d", n.ManagementPort),
	}
	if err := n.prepare(cookie); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("prepare node %s in %s: %w", n.Name, dir, err)
	}
	if err := n.start(); err != nil {
		_ = n.Stop()
		return nil, err
	}
	return n, nil
}

// prepare writes the node's files and gives them to the user it runs as.
func (n *Node) prepare(cookie string) error {
	for _, d := range []string{"home", "mnesia", "log"} {
		if err := os.Mkdir(filepath.Join(n.dir, d), 0o755); err != nil {
			return err
		}
	}
	conf := fmt.Sprintf(`management.tcp.ip = 127.0.0.1
management.tcp.port = %d
# The management API lists a new connection after its first statistics
# emission; tests wait for that.
collect_statistics_interval = 500
log.file.level = info
`, n.ManagementPort)
	files := []struct {
		name, text string
		mode       os.FileMode
	}{
		{"rabbitmq.conf", conf, 0o644},
		{"rabbitmq-env.conf", "", 0o644},
		{"enabled_plugins", "[rabbitmq_management].\n", 0o644},
		{"home/.erlang.cookie", cookie, 0o400},
		{ownerFile, strconv.Itoa(os.Getpid()), 0o644},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(n.dir, f.name), []byte(f.text), f.mode); err != nil {
			return err
		}
	}
	n.env = []string{
		"PATH=" + os.Getenv("PATH") + ":/usr/local/sbin:/usr/sbin:/sbin",
		"HOME=" + filepath.Join(n.dir, "home"), // where the cookie is
		"LANG=C.UTF-8",
		"LC_ALL=C.UTF-8",
		// Read nothing of the system's node: not its environment file
		// (node name), nor its configuration (port 5672).
		"RABBITMQ_CONF_ENV_FILE=" + filepath.Join(n.dir, "rabbitmq-env.conf"),
		"RABBITMQ_CONFIG_FILE=" + filepath.Join(n.dir, "rabbitmq.conf"),
		"RABBITMQ_ADVANCED_CONFIG_FILE=" + filepath.Join(n.dir, "advanced.config"),
		"RABBITMQ_ENABLED_PLUGINS_FILE=" + filepath.Join(n.dir, "enabled_plugins"),
		"RABBITMQ_MNESIA_BASE=" + filepath.Join(n.dir, "mnesia"),
		"RABBITMQ_LOG_BASE=" + filepath.Join(n.dir, "log"),
		"RABBITMQ_PID_FILE=" + filepath.Join(n.dir, "pid"),
		"RABBITMQ_NODENAME=" + n.Name,
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_NODE_PORT=" + strconv.Itoa(n.AMQPPort),
		"RABBITMQ_DIST_PORT=" + strconv.Itoa(n.DistPort),
		// Erlang distribution and epmd on loopback only.
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}",
		"ERL_EPMD_ADDRESS=127.0.0.1",
		// The script then execs the VM instead of waiting on it in a
		// shell, so our child is the node itself: a signal reaches it.
		"RUNNING_UNDER_SYSTEMD=true",
	}
	if os.Geteuid() != 0 {
		return nil
	}
	// As root, the node runs as the rabbitmq user (as the system's does),
	// and its directories must be that user's.
	u, err := user.Lookup("rabbitmq")
	if err != nil {
		return fmt.Errorf("running as root, a node runs as the rabbitmq user: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	n.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	return filepath.WalkDir(n.dir, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}

// start runs rabbitmq-server and waits until the node serves.
func (n *Node) start() error {
	out, err := os.Create(filepath.Join(n.dir, "stdout.log"))
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.Command(filepath.Join(n.bin, "rabbitmq-server"))
	cmd.Dir = n.dir
	cmd.Env = n.env
	// A file, not a pipe: exec starts no goroutine to copy it, so the
	// node leaves nothing for goleak to find.
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: n.cred,
		Setpgid:    true,
		// Should the test binary die without stopping it, the node goes
		// too.
		Pdeathsig: syscall.SIGTERM,
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start rabbitmq-server: %w", err)
	}
	n.mu.Lock()
	n.cmd = cmd
	n.mu.Unlock()
	return n.awaitUp(nodeStartTimeout)
}

// awaitUp waits until the node's management API answers as this node, with
// its AMQP listener up. RabbitMQ offers nothing to wait on before its
// distribution port is up (and rabbitmqctl await_startup costs seconds of
// CPU per try), so this polls.
func (n *Node) awaitUp(within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		if err := n.reap(); err != nil {
			return fmt.Errorf("node %s: %w: %v%s", n.Name, errBootFailed, err, n.logTail())
		}
		err := n.up()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node %s not up within %v: %v%s", n.Name, within, err, n.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// up reports whether the node serves its management API and AMQP.
func (n *Node) up() error {
	var overview struct {
		Node      string `json:"node"`
		Listeners []struct {
			Node     string `json:"node"`
			Protocol string `json:"protocol"`
			Port     int    `json:"port"`
		} `json:"listeners"`
	}
	if err := n.get("/api/overview", &overview); err != nil {
		return err
	}
	if overview.Node != n.Name {
		return fmt.Errorf("port %d answers as node %q", n.ManagementPort, overview.Node)
	}
	listening := false
	for _, l := range overview.Listeners {
		listening = listening || (l.Node == n.Name && l.Protocol == "amqp" && l.Port == n.AMQPPort)
	}
	if !listening {
		return fmt.Errorf("no AMQP listener on port %d yet", n.AMQPPort)
	}
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(n.AMQPPort)), 5*time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

// get decodes the management API's answer to path into v.
func (n *Node) get(path string, v any) error {
	req, err := managementRequest(n.ManagementURL, http.MethodGet, path)
	if err != nil {
		return err
	}
	resp, err := mgmtClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// reap returns why the node's process ended, if it has; nil while it runs.
// It polls (WNOHANG) rather than waiting in a goroutine, which goleak would
// count as leaked for as long as the node runs.
func (n *Node) reap() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		if n.exited == nil {
			return errors.New("not running")
		}
		return n.exited
	}
	var ws syscall.WaitStatus
	pid, err := syscall.Wait4(n.cmd.Process.Pid, &ws, syscall.WNOHANG, nil)
	if err != nil || pid == 0 {
		return nil
	}
	n.cmd = nil
	n.exited = fmt.Errorf("rabbitmq-server exited: %s", describe(ws))
	return n.exited
}

func describe(ws syscall.WaitStatus) string {
	if ws.Signaled() {
		return "killed by " + ws.Signal().String()
	}
	return "status " + strconv.Itoa(ws.ExitStatus())
}

// Ctl runs rabbitmqctl against the node with args and returns its output.
func (n *Node) Ctl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), ctlTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(n.bin, "rabbitmqctl"), append([]string{"-n", n.Name}, args...)...)
	cmd.Dir = n.dir
	cmd.Env = n.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: n.cred}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("rabbitmqctl -n %s %s: %w\n%s", n.Name, strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

// StopApp stops the RabbitMQ application of the node, leaving its Erlang VM
// up (rabbitmqctl stop_app): every client connection to it is closed.
func (n *Node) StopApp() error {
	_, err := n.Ctl("stop_app")
	return err
}

// StartApp starts the application again and waits until the node serves.
func (n *Node) StartApp() error {
	if _, err := n.Ctl("start_app"); err != nil {
		return err
	}
	return n.awaitUp(nodeStartTimeout)
}

// Kill kills the node's whole process group at once (SIGKILL), as a crash
// of its machine would, and waits for it to be gone.
func (n *Node) Kill() error {
	n.mu.Lock()
	cmd := n.cmd
	n.mu.Unlock()
	if cmd == nil {
		return errors.New("node is not running")
	}
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill node %s: %w", n.Name, err)
	}
	n.wait(cmd, nodeStopTimeout)
	return nil
}

// Stop kills the node if it runs and deletes its files; its data is
// deleted, so nothing is gained by a graceful stop, which takes seconds on
// a busy machine. It may be called more than once.
func (n *Node) Stop() error {
	n.mu.Lock()
	cmd := n.cmd
	n.mu.Unlock()
	if cmd != nil {
		// The VM's helpers (erl_child_setup, inet_gethost) share its
		// process group.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		n.wait(cmd, nodeStopTimeout)
	}
	return os.RemoveAll(n.dir)
}

// wait waits up to within for cmd to exit, and reports whether it did.
func (n *Node) wait(cmd *exec.Cmd, within time.Duration) bool {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		n.mu.Lock()
		if n.cmd == cmd {
			n.cmd = nil
			n.exited = fmt.Errorf("rabbitmq-server exited: %v", err)
		}
		n.mu.Unlock()
		return true
	case <-time.After(within):
		// The goroutine ends when the process does, after SIGKILL.
		return false
	}
}

// logTail returns the end of the node's output and log, to explain a
// failure.
func (n *Node) logTail() string {
	var b strings.Builder
	logs, _ := filepath.Glob(filepath.Join(n.dir, "log", "*.log"))
	for _, f := range append([]string{filepath.Join(n.dir, "stdout.log")}, logs...) {
		data, err := os.ReadFile(f)
		if err != nil || len(data) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		lines = lines[max(0, len(lines)-30):]
		fmt.Fprintf(&b, "\n--- %s (last %d lines) ---\n%s", f, len(lines), strings.Join(lines, "\n"))
	}
	return b.String()
}

// rabbitmqBin returns the directory that holds the installed rabbitmq-server
// and rabbitmqctl scripts. Debian's /usr/sbin ones are a wrapper that runs
// the real scripts as the rabbitmq user from /var/lib/rabbitmq; we run the
// real ones, with an environment of our own.
func rabbitmqBin() (string, error) {
	path, err := exec.LookPath("rabbitmq-server")
	if err != nil {
		for _, dir := range []string{"/usr/lib/rabbitmq/bin", "/usr/local/sbin", "/usr/sbin", "/sbin"} {
			if _, serr := os.Stat(filepath.Join(dir, "rabbitmq-server")); serr == nil {
				path, err = filepath.Join(dir, "rabbitmq-server"), nil
				break
			}
		}
	}
	if err != nil {
		return "", errors.New("rabbitmq-server is not installed (apt-get install rabbitmq-server), and AMQP_URL names no broker: the integration tests need one")
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", err
	}
	return filepath.Dir(real), nil
}

// Each node's directory is named with nodeDirPrefix and holds ownerFile,
// the process ID of the test binary that started it.
const (
	nodeDirPrefix = "eventsproxy-rabbitmq-"
	ownerFile     = "owner.pid"
)

// sweepStale deletes the directories of nodes whose test binary is gone: one
// killed (a test timeout, ^C) cannot delete its node's files, though the node
// itself dies with it (Pdeathsig).
func sweepStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), nodeDirPrefix+"*"))
	for _, dir := range dirs {
		data, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue // being prepared, or not ours
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(dir)
		}
	}
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		// Held open until all are chosen, so that they differ.
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func randomCookie() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return strings.ToUpper(hex.EncodeToString(b[:]))
}
