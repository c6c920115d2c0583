package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Reasons for refusing a stream before it starts; the values of the
// `reason` label of eventsproxy_streams_refused_total.
const (
	RefusedMaxConnections       = "max_connections"
	RefusedMaxConnectionsPerIP  = "max_connections_per_ip"
	RefusedConnectRate          = "connect_rate"
	RefusedBrokerUnavailable    = "broker_unavailable"
	RefusedShuttingDown         = "shutting_down"
	RefusedUnauthorized         = "unauthorized"            // no token, or a token refused
	RefusedMaxStreamsPerSubject = "max_streams_per_subject" // the token's subject has its streams
)

// Why a stream ended; the values of the `why` label of
// eventsproxy_streams_ended_total.
const (
	EndedClient     = "client"      // the client went away
	EndedBadRequest = "bad_request" // its bindings were refused by the parser
	EndedForbidden  = "forbidden"   // a binding its token does not grant
	EndedExpired    = "expired"     // its token expired
	EndedExchange   = "exchange"    // the broker refused a binding
	EndedBroker     = "broker"      // the broker connection was lost
	EndedShutdown   = "shutdown"    // the server is shutting down
	EndedWrite      = "write"       // a write failed: the client is gone or too slow
	EndedInternal   = "internal"    // anything else
)

// Why a resume failed: the `reason` of the `gap` event and of
// eventsproxy_resumes_total.
const (
	GapUnknown  = "unknown"  // a token of another process, or not a token
	GapExpired  = "expired"  // its stream stopped lingering
	GapBindings = "bindings" // asked with other bindings
	GapEvicted  = "evicted"  // the history no longer covers it
	GapBroker   = "broker"   // the broker connection was lost
)

// Metrics holds every collector of the service. Its collectors are safe for
// concurrent use; a nil *Metrics is not, use Discard instead.
type Metrics struct {
	StreamsOpen     prometheus.Gauge
	StreamsRefused  *prometheus.CounterVec
	StreamsEnded    *prometheus.CounterVec
	BrokerConnected prometheus.Gauge
	BrokerConnects  prometheus.Counter
	QueuesHeld      prometheus.Gauge
	BindingsHeld    prometheus.Gauge
	BindOps         *prometheus.CounterVec
	WideBindings    prometheus.Gauge
	WideChanges     *prometheus.CounterVec

	MessagesReceived  prometheus.Counter
	MessagesWanted    prometheus.Counter
	MessagesDelivered prometheus.Counter
	MessagesDropped   prometheus.Counter
	MessagesUnrouted  prometheus.Counter
	MessagesTooLarge  prometheus.Counter
	BufferedBytes     prometheus.Gauge

	MessagesBrokerDropped prometheus.Counter
	BrokerDropsUncounted  prometheus.Counter

	Resumes           *prometheus.CounterVec
	ResumeLingering   prometheus.Gauge
	ResumePinnedBytes prometheus.Gauge

	ReadySeconds           prometheus.Histogram
	DeliveryLatencySeconds prometheus.Histogram
}

// New creates the collectors and registers them on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		StreamsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eventsproxy_streams_open",
			Help: "Streams open now.",
		}),
		StreamsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventsproxy_streams_refused_total",
			Help: "Connect requests refused before their stream started, by reason.",
		}, []string{"reason"}),
		StreamsEnded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventsproxy_streams_ended_total",
			Help: "Streams ended, by why: client (went away), bad_request, forbidden (a binding the token does not grant), exchange (refused by the broker), expired (the token), broker (connection lost), shutdown, write (client too slow or gone), internal.",
		}, []string{"why"}),
		BrokerConnected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eventsproxy_broker_connected",
			Help: "1 while the broker connection is up, else 0.",
		}),
		BrokerConnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eventsproxy_broker_connects_total",
			Help: "Broker connections established, the first one included; more than one means reconnects.",
		}),
		QueuesHeld: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eventsproxy_broker_queues",
			Help: "Queues this process holds on the broker (1 while connected; on RabbitMQ its two side queues go with it).",
		}),
		BindingsHeld: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eventsproxy_broker_bindings",
			Help: "Bindings this process holds on the broker.",
		}),
		BindOps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventsproxy_broker_bind_operations_total",
			Help: "Bind and unbind operations asked of the broker, by op (bind, unbind, rebind: the periodic bind of a binding held already) and result (ok, refused, error).",
		}, []string{"op", "result"}),
		WideBindings: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eventsproxy_broker_wide_bindings",
			Help: "Exchanges bound wide now: one binding (such as primary.# or #) serves their streams' patterns, matched in process.",
		}),
		WideChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventsproxy_broker_wide_changes_total",
			Help: "Exchanges bound wide (change=widen) and narrowed again (change=narrow).",
		}, []string{"change"}),
		MessagesReceived: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eventsproxy_messages_received_total",
			Help: "Messages taken from the broker.",
		}),
		MessagesWanted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eventsproxy_messages_wanted_total",
			Help: "Messages taken from the broker that reached at least one stream; the rest of eventsproxy_messages_received_total is what wide bindings (and routes the process cannot see) brought for no stream.",
		}),
		MessagesDelivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eventsproxy_messages_delivered_total",
			Help: "Messages written to streams (one message to two streams counts two).",
		}),
		MessagesDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eventsproxy_messages_dropped_total",
			Help: "Messages that streams lost, counted once per stream: dropped from full stream buffers, over --max-message-bytes, or dropped by the broker (the streams were told with an overflow event).",
		}),
		MessagesUnrouted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eventsproxy_messages_unrouted_total",
			Help: "Messages taken from the broker that matched no binding of the process, so reached no stream: they came by a route the process cannot see (a BCC header, an exchange-to-exchange binding, an alternate exchange), or just as their binding was removed.",
		}),
		MessagesTooLarge: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eventsproxy_messages_too_large_total",
			Help: "Messages over --max-message-bytes, dropped (each stream they matched was told with an overflow event).",
		}),
		MessagesBrokerDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eventsproxy_broker_messages_dropped_total",
			Help: "Messages the broker dropped from the process's queue before the process took them (the queue was full, or they expired), learnt from their dead-lettered copies; each stream they matched was told with an overflow event.",
		}),
		BrokerDropsUncounted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eventsproxy_broker_drops_uncounted_total",
			Help: "Times the broker lost messages that the process could not count (its queue of dropped messages overflowed too, or a dropped message did not say how it was routed); every stream was told with an overflow event marked uncounted.",
		}),
		BufferedBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eventsproxy_stream_buffered_bytes",
			Help: "Bytes of messages waiting in stream buffers, a message counted once per stream that holds it (what slow streams keep alive, at most).",
		}),
		Resumes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventsproxy_resumes_total",
			Help: "Reconnects with a token, by result (ok, gap) and reason (empty when ok; unknown, expired, bindings, evicted, broker); a resumable stream that went on across a lost broker connection counts as gap, broker. Counted when the client is told (ready, or the gap event): a reconnect refused before its stream started counts as neither.",
		}, []string{"result", "reason"}),
		ResumeLingering: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eventsproxy_resume_lingering_streams",
			Help: "Resumable streams whose client left, kept for the resume window.",
		}),
		ResumePinnedBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eventsproxy_resume_pinned_bytes",
			Help: "Bytes of sent messages that lingering streams keep for replay.",
		}),
		ReadySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "eventsproxy_stream_ready_seconds",
			Help:    "Time from a connect request to its ready event.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		DeliveryLatencySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "eventsproxy_delivery_latency_seconds",
			Help:    "Time from taking a message from the broker to writing it to a stream, for the oldest message of each write.",
			Buckets: []float64{.0001, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
	}
	// Every label value exists from the start, so that a rate() or an
	// alert sees 0 rather than nothing.
	for _, r := range []string{RefusedMaxConnections, RefusedMaxConnectionsPerIP, RefusedConnectRate, RefusedBrokerUnavailable, RefusedShuttingDown, RefusedUnauthorized, RefusedMaxStreamsPerSubject} {
		m.StreamsRefused.WithLabelValues(r)
	}
	for _, why := range []string{EndedClient, EndedBadRequest, EndedForbidden, EndedExpired, EndedExchange, EndedBroker, EndedShutdown, EndedWrite, EndedInternal} {
		m.StreamsEnded.WithLabelValues(why)
	}
	for _, op := range []string{"bind", "unbind", "rebind"} {
		for _, result := range []string{"ok", "refused", "error"} {
			m.BindOps.WithLabelValues(op, result)
		}
	}
	for _, change := range []string{"widen", "narrow"} {
		m.WideChanges.WithLabelValues(change)
	}
	reg.MustRegister(
		m.StreamsOpen, m.StreamsRefused, m.StreamsEnded,
		m.BrokerConnected, m.BrokerConnects, m.QueuesHeld, m.BindingsHeld, m.BindOps, m.WideBindings, m.WideChanges,
		m.MessagesReceived, m.MessagesWanted, m.MessagesDelivered, m.MessagesDropped, m.MessagesUnrouted, m.MessagesTooLarge, m.BufferedBytes,
		m.MessagesBrokerDropped, m.BrokerDropsUncounted,
		m.Resumes, m.ResumeLingering, m.ResumePinnedBytes,
		m.ReadySeconds, m.DeliveryLatencySeconds,
	)
	return m
}

// Discard returns collectors registered nowhere, for components built
// without metrics (tests, tools).
func Discard() *Metrics {
	return New(prometheus.NewRegistry())
}
