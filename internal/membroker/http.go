package membroker

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"eventsproxy/internal/broker"
)

// PublishPath is where `eventsproxy dev` serves PublishHandler. `serve`
// never does: on RabbitMQ, publishing is the broker's business.
const PublishPath = "/dev/publish"

// MaxPublishBody is the largest body PublishHandler takes.
const MaxPublishBody = 16 << 20

// PublishResult is the JSON answer of PublishHandler to a message it
// published.
type PublishResult struct {
	Exchange   string   `json:"exchange"`
	RoutingKey string   `json:"routingKey"`
	CC         []string `json:"cc"`
	Bytes      int      `json:"bytes"`
}

// PublishError is the JSON answer of PublishHandler to a request it
// refused, in the shape of the service's other refusals.
type PublishError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// PublishHandler publishes the body of each POST to b, as
// `eventsproxy publish --dev-url` sends it:
//
//	POST /dev/publish?exchange=amq.topic&routingKey=a.b&cc=route.x&header=x-trace=abc
//
// cc may be repeated; routingKey must be given, and may be empty. Each
// header NAME=VALUE (repeatable) is a string header of the message, and
// the request's Content-Type its content type. The
// answer is 200 with a PublishResult, or a PublishError: 400 for a bad
// request, 404 when the exchange does not exist, 413 for a body over
// MaxPublishBody.
func (b *Broker) PublishHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		refuse := func(status int, code, format string, args ...any) {
			writeJSON(w, status, PublishError{Code: code, Message: fmt.Sprintf(format, args...)})
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			refuse(http.StatusMethodNotAllowed, "MethodNotAllowed", "Publish with POST; the body is the message.")
			return
		}
		q := r.URL.Query()
		exchange := q.Get("exchange")
		keys, hasKey := q["routingKey"]
		switch {
		case exchange == "":
			refuse(http.StatusBadRequest, "InputError", "The query parameter `exchange` is required.")
			return
		case !hasKey || len(keys) != 1:
			refuse(http.StatusBadRequest, "InputError", "The query parameter `routingKey` is required, once (it may be empty).")
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxPublishBody))
		if err != nil {
			if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
				refuse(http.StatusRequestEntityTooLarge, "InputError", "The body is over %d MiB.", MaxPublishBody>>20)
				return
			}
			refuse(http.StatusBadRequest, "InputError", "Cannot read the body.")
			return
		}
		props := &broker.Properties{ContentType: r.Header.Get("Content-Type"), DeliveryMode: 1, Timestamp: time.Now().Truncate(time.Second)}
		for _, h := range q["header"] {
			name, value, ok := strings.Cut(h, "=")
			if !ok || name == "" || name == "CC" || name == "BCC" {
				refuse(http.StatusBadRequest, "InputError", "The query parameter `header` must be NAME=VALUE, not %q (CC and BCC are routing: use `cc`).", h)
				return
			}
			if props.Headers == nil {
				props.Headers = amqp.Table{}
			}
			props.Headers[name] = value
		}
		cc := q["cc"]
		if err := b.PublishWith(exchange, keys[0], cc, body, props); err != nil {
			if errors.Is(err, broker.ErrExchangeNotFound) {
				refuse(http.StatusNotFound, "ExchangeNotFound", "Exchange %q does not exist.", exchange)
				return
			}
			refuse(http.StatusInternalServerError, "InternalError", "Unknown Internal Error")
			return
		}
		if cc == nil {
			cc = []string{}
		}
		writeJSON(w, http.StatusOK, PublishResult{Exchange: exchange, RoutingKey: keys[0], CC: cc, Bytes: len(body)})
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
