package load

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is the kernel's USER_HZ, the unit of /proc CPU times; it is 100
// on every Linux that Go supports.
const clockTicks = 100

// RSS returns the resident set size of process pid in bytes, from
// /proc/<pid>/status (VmRSS).
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				break
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// CPUTime returns the user plus system CPU time process pid has used.
func CPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: fields count
	// from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	return time.Duration(u+s) * time.Second / clockTicks, nil
}

// WriteCalls returns the write system calls process pid has made (syscw
// in /proc/<pid>/io), or -1 when they cannot be read.
func WriteCalls(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return -1
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "syscw:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}

// selfCPU returns the CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineBusy returns the CPU time all processes of the machine have used,
// from /proc/stat (everything but idle and iowait).
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i >= 8 { // guest times are counted in user already
			break
		}
		busy += n
	}
	return time.Duration(busy) * time.Second / clockTicks
}

// LoadAvg returns the first three fields of /proc/loadavg.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// findProcess returns the pid of the oldest process whose command name is
// comm, or 0: on a machine where tests start RabbitMQ nodes of their own
// and stop them, the oldest beam.smp is the system's broker, which lives
// through a run. It only reads /proc.
func findProcess(comm string) int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	found, oldest := 0, int64(-1)
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/comm")
		if err != nil || strings.TrimSpace(string(b)) != comm {
			continue
		}
		if start := startTime(pid); found == 0 || (start >= 0 && start < oldest) {
			found, oldest = pid, start
		}
	}
	return found
}

// startTime returns when process pid started, in clock ticks after boot
// (field 22 of /proc/<pid>/stat), or -1.
func startTime(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return -1
	}
	// f[0] is field 3.
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return -1
	}
	v, err := strconv.ParseInt(f[19], 10, 64)
	if err != nil {
		return -1
	}
	return v
}

// RaiseFileLimit raises this process's soft open-file limit to its hard
// limit (children started afterwards inherit it) and returns the new
// limit.
func RaiseFileLimit() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			return 0, err
		}
	}
	return rl.Cur, nil
}

// usage samples the CPU time of the server, the tool, the broker and the
// whole machine, so that a phase's CPU use can be told apart.
type usage struct {
	at                          time.Time
	server, tool, broker, total time.Duration
	// serverWrites is the server's write system calls so far (-1:
	// unknown).
	serverWrites int64
}

func sampleUsage(serverPID, brokerPID int) usage {
	u := usage{at: time.Now(), tool: selfCPU(), total: machineBusy(), serverWrites: -1}
	if serverPID > 0 {
		u.server, _ = CPUTime(serverPID)
		u.serverWrites = WriteCalls(serverPID)
	}
	if brokerPID > 0 {
		u.broker, _ = CPUTime(brokerPID)
	}
	return u
}

// cores returns the CPU each party used between u and v, in cores (1 = one
// core busy all the time).
func (u usage) cores(v usage) (server, tool, broker, others float64) {
	wall := v.at.Sub(u.at).Seconds()
	if wall <= 0 {
		return
	}
	server = (v.server - u.server).Seconds() / wall
	tool = (v.tool - u.tool).Seconds() / wall
	broker = (v.broker - u.broker).Seconds() / wall
	total := (v.total - u.total).Seconds() / wall
	others = max(total-server-tool-broker, 0)
	return
}
