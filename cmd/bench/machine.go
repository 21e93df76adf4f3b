package main

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"time"
)

// machine is what the figures were measured on.
type machine struct {
	Date       time.Time `json:"date"`
	CPU        string    `json:"cpu"`
	Cores      int       `json:"cores"`
	OS         string    `json:"os"`
	Go         string    `json:"go"`
	Redis      string    `json:"redisServer"`
	Asynq      string    `json:"asynq"`
	LoadBefore string    `json:"loadAverageBefore"` // 1, 5 and 15 minutes, from /proc/loadavg
	LoadAfter  string    `json:"loadAverageAfter"`
}

func describeMachine(ctx context.Context) machine {
	m := machine{Date: time.Now().UTC(), CPU: "unknown", Cores: runtime.NumCPU(), Go: runtime.Version(),
		Redis: "unknown", Asynq: "unknown", LoadBefore: loadAverage()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		m.CPU = cpuModel(f)
		f.Close()
	}
	m.OS = runtime.GOOS + "/" + runtime.GOARCH
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.OS += " " + strings.TrimSpace(string(b))
	}
	if out, err := exec.CommandContext(ctx, "redis-server", "--version").Output(); err == nil {
		m.Redis = redisVersion(string(out))
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/hibiken/asynq" {
				m.Asynq = d.Version
			}
		}
	}
	return m
}

// cpuModel is the first "model name" of /proc/cpuinfo.
func cpuModel(r io.Reader) string {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// redisVersion reads "Redis server v=7.0.15 sha=…" as "7.0.15".
func redisVersion(s string) string {
	for _, f := range strings.Fields(s) {
		if v, ok := strings.CutPrefix(f, "v="); ok {
			return v
		}
	}
	return strings.TrimSpace(s)
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
