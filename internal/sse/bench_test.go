package sse

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// benchData is a message event's data of about 512 bytes.
var benchData = []byte(`{"exchange":"exchange/taskcluster-queue/v1/task-completed",` +
	`"routingKey":"primary.fUAqPqVNTnu6yS4XXUgfOw.0.us-east-1.i-0123456789abcdef0.proj-releng.b-linux.taskcluster-github.Ak6jrFDeTq2LkfdYRo7N-A._",` +
	`"redelivered":false,"routes":["index.project.releng.latest","checks"],` +
	`"payload":{"status":{"taskId":"fUAqPqVNTnu6yS4XXUgfOw","provisionerId":"proj-releng","workerType":"b-linux",` +
	`"schedulerId":"taskcluster-github","taskGroupId":"Ak6jrFDeTq2LkfdYRo7N-A",` +
	`"retriesLeft":5,"state":"completed"},"runId":0,"version":1}}`)

func BenchmarkAppendEvent(b *testing.B) {
	buf := make([]byte, 0, 1024)
	b.SetBytes(int64(len(benchData)))
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendEvent(buf[:0], "message", benchData)
	}
}

func BenchmarkReader(b *testing.B) {
	const events = 1000
	var stream []byte
	for range events {
		stream = AppendEvent(stream, "message", benchData)
	}
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	src := bytes.NewReader(stream)
	for b.Loop() {
		src.Reset(stream)
		r := NewReader(src)
		n := 0
		for {
			_, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n != events {
			b.Fatalf("read %d events, want %d", n, events)
		}
	}
}

// BenchmarkReaderCRLines reads lines ended by CR alone, which must not cost
// a search of the whole buffer each.
func BenchmarkReaderCRLines(b *testing.B) {
	stream := []byte(strings.Repeat("data: x\r", 100000) + "\r")
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	src := bytes.NewReader(stream)
	for b.Loop() {
		src.Reset(stream)
		r := NewReader(src)
		if _, err := r.Next(); err != nil {
			b.Fatal(err)
		}
	}
}
