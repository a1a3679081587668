package eventsource

import (
	"context"
	"crypto/md5" //nolint:gosec // SQS's md5OfBody, a checksum, not security
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
)

// A NATS source reads a JetStream stream through one durable consumer,
// named after the source, that every gateway shares: JetStream hands each
// message to one gateway at a time, and redelivers it when that gateway
// stops acknowledging it.

// NATSConsumer is the durable consumer of a source.
func NATSConsumer(source string) string { return "nimbus-source-" + source }

// natsAckWait is how long a delivered message stays with its gateway
// without a sign of progress (keepAliveEvery is well within it).
const natsAckWait = 30 * time.Second

// natsConsumerConfig is the consumer that a source's settings describe.
func natsConsumerConfig(src kvstore.EventSource) (jetstream.ConsumerConfig, error) {
	cfg := jetstream.ConsumerConfig{
		Durable:       NATSConsumer(src.Name),
		Description:   "Nimbus event source " + src.Name + " (function " + src.Function + ")",
		FilterSubject: src.NATS.FilterSubject,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       natsAckWait,
		// Every gateway together holds at most this many unacknowledged
		// messages: maximum_concurrency full batches (slots.go bounds the
		// batches themselves).
		MaxAckPending: max(src.MaxConcurrency, 1) * max(src.BatchSize, 1),
		MaxDeliver:    -1,
	}
	switch src.NATS.StartingPosition {
	case kvstore.StartLatest:
		cfg.DeliverPolicy = jetstream.DeliverNewPolicy
	case kvstore.StartAtTimestamp:
		t, err := time.Parse(time.RFC3339, src.NATS.StartingPositionTimestamp)
		if err != nil {
			return cfg, fmt.Errorf("starting_position_timestamp %q is not an RFC 3339 time: %w", src.NATS.StartingPositionTimestamp, err)
		}
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
	default:
		cfg.DeliverPolicy = jetstream.DeliverAllPolicy
	}
	return cfg, nil
}

// PrepareNATS creates or updates the source's durable consumer: the
// broker's own refusal (no such stream, a filter outside the stream's
// subjects, a changed starting position) comes back as the error.
func PrepareNATS(ctx context.Context, nc *nats.Conn, src kvstore.EventSource) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	cfg, err := natsConsumerConfig(src)
	if err != nil {
		return err
	}
	stream, err := js.Stream(ctx, src.NATS.Stream)
	if err != nil {
		return natsRefusal("reading stream "+src.NATS.Stream, src.NATS.Stream, err)
	}
	if f := src.NATS.FilterSubject; f != "" && !coveredByAny(f, stream.CachedInfo().Config.Subjects) {
		return fmt.Errorf("the filter subject %s matches none of stream %s's subjects %v: the source would never receive a message; filter on subjects the stream stores",
			f, src.NATS.Stream, stream.CachedInfo().Config.Subjects)
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, src.NATS.Stream, cfg); err != nil {
		return natsRefusal("creating or updating the consumer "+cfg.Durable, src.NATS.Stream, err)
	}
	return nil
}

// natsRefusal explains an error of JetStream's API: a request that got
// no answer is, most often, one the gateway's user may not send.
func natsRefusal(doing, stream string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) {
		return fmt.Errorf("%s: JetStream did not answer (%w); most often the gateway's NATS user lacks the rights on the stream: grant the subjects of stream %s that examples/platform/nats/gateway-permissions.conf lists for event sources", doing, err, stream)
	}
	return fmt.Errorf("%s: JetStream refused: %w", doing, err)
}

// coveredByAny reports whether every subject that filter matches is one
// of the stream's subjects.
func coveredByAny(filter string, subjects []string) bool {
	for _, s := range subjects {
		if covers(strings.Split(s, "."), strings.Split(filter, ".")) {
			return true
		}
	}
	return false
}

// covers reports whether the subject pattern p matches every subject
// that the pattern f matches.
func covers(p, f []string) bool {
	for i, pt := range p {
		switch {
		case pt == ">":
			return i < len(f)
		case i >= len(f) || f[i] == ">":
			return false
		case pt == "*":
			continue
		case pt != f[i]:
			return false
		}
	}
	return len(p) == len(f)
}

// DeleteNATS removes the source's durable consumer; one already gone is
// no error.
func DeleteNATS(ctx context.Context, nc *nats.Conn, stream, source string) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	err = js.DeleteConsumer(ctx, stream, NATSConsumer(source))
	if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	return err
}

// ConsumeNATS runs the source's batches until ctx ends or the consumer
// fails. The consumer must have been prepared (PrepareNATS, at apply):
// a gateway never creates one, so a source being destroyed cannot be
// brought back by a gateway that has not yet seen it go.
func ConsumeNATS(ctx context.Context, nc *nats.Conn, src kvstore.EventSource, h Handler, shared *Slots, log *slog.Logger) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	cons, err := js.Consumer(ctx, src.NATS.Stream, NATSConsumer(src.Name))
	if err != nil {
		return fmt.Errorf("reading the consumer %s of stream %s (apply the source again to create it): %w", NATSConsumer(src.Name), src.NATS.Stream, err)
	}
	b := &natsBroker{cons: cons, stream: src.NATS.Stream,
		arn: "arn:nimbus:nats:::stream/" + src.NATS.Stream + "/consumer/" + NATSConsumer(src.Name)}
	return run(ctx, src, b, h, shared.of(src.Name, src.MaxConcurrency), log)
}

type natsBroker struct {
	cons   jetstream.Consumer
	stream string
	arn    string
}

// firstWait bounds the wait for a batch's first message, so a stopping
// source notices soon.
const firstWait = 5 * time.Second

func (b *natsBroker) next(_ context.Context, size int, window time.Duration) ([]message, error) {
	msgs, err := b.fetch(b.cons.Fetch(1, jetstream.FetchMaxWait(firstWait)))
	if err != nil || len(msgs) == 0 || size == 1 {
		return msgs, err
	}
	var more []message
	if window <= 0 {
		more, err = b.fetch(b.cons.FetchNoWait(size - 1))
	} else {
		more, err = b.fetch(b.cons.Fetch(size-1, jetstream.FetchMaxWait(window)))
	}
	// The first message is held already: an error gathering more still
	// sends it.
	if err != nil {
		return msgs, nil
	}
	return append(msgs, more...), nil
}

func (b *natsBroker) fetch(batch jetstream.MessageBatch, err error) ([]message, error) {
	if err != nil {
		return nil, err
	}
	var out []message
	for m := range batch.Messages() {
		md, err := m.Metadata()
		if err != nil {
			_ = m.Term()
			continue
		}
		out = append(out, &natsMessage{msg: m, md: md, broker: b})
	}
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) {
		return out, err
	}
	return out, nil
}

func (b *natsBroker) event(records []any) []byte {
	ev, _ := json.Marshal(map[string]any{"Records": records})
	return ev
}

type natsMessage struct {
	msg    jetstream.Msg
	md     *jetstream.MsgMetadata
	broker *natsBroker
}

func (m *natsMessage) id() string {
	return m.broker.stream + ":" + strconv.FormatUint(m.md.Sequence.Stream, 10)
}

func (m *natsMessage) attempt() int { return int(m.md.NumDelivered) }

func (m *natsMessage) ack(ctx context.Context) error { return m.msg.DoubleAck(ctx) }

func (m *natsMessage) retry(_ context.Context, delay time.Duration) error {
	return m.msg.NakWithDelay(delay)
}

func (m *natsMessage) release() error { return m.msg.Nak() }

func (m *natsMessage) keepAlive() { _ = m.msg.InProgress() }

// NATSRecord is a NATS message in a batch: the fields of an SQS record
// (so events.SQSEvent handlers work: the body is the data, as text), and
// the message's own subject, headers, stream sequence and data (base64).
type NATSRecord struct {
	MessageID         string                  `json:"messageId"`
	ReceiptHandle     string                  `json:"receiptHandle"`
	Body              string                  `json:"body"`
	MD5OfBody         string                  `json:"md5OfBody"`
	Attributes        map[string]string       `json:"attributes"`
	MessageAttributes map[string]sqsAttribute `json:"messageAttributes"`
	EventSource       string                  `json:"eventSource"`
	EventSourceARN    string                  `json:"eventSourceARN"`
	AWSRegion         string                  `json:"awsRegion"`

	Subject  string              `json:"subject"`
	Sequence uint64              `json:"sequence"`
	Headers  map[string][]string `json:"headers,omitempty"`
	Data     string              `json:"data"`
}

type sqsAttribute struct {
	StringValue      *string  `json:"stringValue,omitempty"`
	StringListValues []string `json:"stringListValues"`
	BinaryListValues [][]byte `json:"binaryListValues"`
	DataType         string   `json:"dataType"`
}

func (m *natsMessage) record() any {
	data := m.msg.Data()
	sum := md5.Sum(data) //nolint:gosec // SQS's checksum
	r := NATSRecord{
		MessageID: m.id(), ReceiptHandle: m.id(),
		MD5OfBody: hex.EncodeToString(sum[:]),
		Attributes: map[string]string{
			"ApproximateReceiveCount":          strconv.FormatUint(m.md.NumDelivered, 10),
			"SentTimestamp":                    strconv.FormatInt(m.md.Timestamp.UnixMilli(), 10),
			"ApproximateFirstReceiveTimestamp": strconv.FormatInt(time.Now().UnixMilli(), 10),
		},
		MessageAttributes: map[string]sqsAttribute{},
		EventSource:       "nimbus:nats", EventSourceARN: m.broker.arn, AWSRegion: "nimbus",
		Subject: m.msg.Subject(), Sequence: m.md.Sequence.Stream,
		Data: base64.StdEncoding.EncodeToString(data),
	}
	if utf8.Valid(data) {
		r.Body = string(data)
	} else {
		// SQS bodies are text: binary data comes base64-encoded, as in data.
		r.Body = r.Data
		r.Attributes["BodyEncoding"] = "base64"
	}
	if h := m.msg.Headers(); len(h) > 0 {
		r.Headers = h
		for k, vs := range h {
			if len(vs) > 0 {
				v := vs[0]
				r.MessageAttributes[k] = sqsAttribute{StringValue: &v, StringListValues: []string{}, BinaryListValues: [][]byte{}, DataType: "String"}
			}
		}
	}
	return r
}
