package eventsource

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/kvstore"
)

// A RabbitMQ source is a queue that every gateway consumes as a competing
// consumer, each with a prefetch of maximum_concurrency full batches; the
// batches themselves take the source's slots (slots.go).
// Classic queues keep no delivery count, so a failed record is published
// again with its attempts in a header (HeaderAttempts), with a publisher
// confirm, before the original is acknowledged.

// HeaderAttempts counts the failed attempts of a record published again.
const HeaderAttempts = "x-nimbus-attempts"

// Credentials log in to a broker.
type Credentials struct{ Username, Password string }

// dialRabbitMQ connects with the credentials (the URL carries none) and
// opens a channel; closing the connection closes both.
func dialRabbitMQ(src kvstore.EventSource, creds Credentials) (*amqp.Connection, *amqp.Channel, error) {
	conn, err := amqp.DialConfig(src.RabbitMQ.URL, amqp.Config{
		SASL:       []amqp.Authentication{&amqp.PlainAuth{Username: creds.Username, Password: creds.Password}},
		Heartbeat:  10 * time.Second,
		Dial:       amqp.DefaultDial(10 * time.Second),
		Properties: amqp.Table{"connection_name": "nimbus-gateway event source " + src.Name},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to RabbitMQ at %s as %s: %w", redactedURL(src.RabbitMQ.URL), creds.Username, err)
	}
	ch, err := conn.Channel()
	if err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	return conn, ch, nil
}

func redactedURL(raw string) string {
	u, err := amqp.ParseURI(raw)
	if err != nil {
		return raw
	}
	return fmt.Sprintf("%s://%s:%d/%s", u.Scheme, u.Host, u.Port, url.PathEscape(u.Vhost))
}

// PrepareRabbitMQ checks that the gateway can log in and that the queue
// exists, with the broker's own refusal as the error.
func PrepareRabbitMQ(_ context.Context, src kvstore.EventSource, creds Credentials) error {
	conn, ch, err := dialRabbitMQ(src, creds)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	if _, err := ch.QueueDeclarePassive(src.RabbitMQ.Queue, true, false, false, false, nil); err != nil {
		return fmt.Errorf("RabbitMQ refused queue %q: %w", src.RabbitMQ.Queue, err)
	}
	return nil
}

// ConsumeRabbitMQ runs the source's batches until ctx ends or the
// connection fails; unacknowledged messages then go back to the queue.
func ConsumeRabbitMQ(ctx context.Context, src kvstore.EventSource, creds Credentials, h Handler, shared *Slots, log *slog.Logger) error {
	conn, ch, err := dialRabbitMQ(src, creds)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	if err := ch.Qos(max(src.MaxConcurrency, 1)*max(src.BatchSize, 1), 0, false); err != nil {
		return err
	}
	deliveries, err := ch.ConsumeWithContext(ctx, src.RabbitMQ.Queue, "", false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("consuming queue %q: %w", src.RabbitMQ.Queue, err)
	}
	pub, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := pub.Confirm(false); err != nil {
		return err
	}
	uri, _ := amqp.ParseURI(src.RabbitMQ.URL)
	vhost := uri.Vhost
	if vhost == "" {
		vhost = "/"
	}
	b := &rabbitBroker{deliveries: deliveries, pub: pub, conn: conn, queue: src.RabbitMQ.Queue, vhost: vhost,
		arn: "arn:nimbus:rabbitmq:::" + redactedURL(src.RabbitMQ.URL) + "/" + src.RabbitMQ.Queue}
	return run(ctx, src, b, h, shared.of(src.Name, src.MaxConcurrency), log)
}

type rabbitBroker struct {
	deliveries <-chan amqp.Delivery
	pub        *amqp.Channel
	conn       *amqp.Connection
	queue      string
	vhost      string
	arn        string
	seq        atomic.Uint64
}

func (b *rabbitBroker) next(ctx context.Context, size int, window time.Duration) ([]message, error) {
	var msgs []message
	select {
	case d, ok := <-b.deliveries:
		if !ok {
			return nil, b.closed()
		}
		msgs = append(msgs, b.message(d))
	case <-ctx.Done():
		return nil, nil
	case <-time.After(firstWait):
		return nil, nil
	}
	var deadline <-chan time.Time
	if window > 0 {
		t := time.NewTimer(window)
		defer t.Stop()
		deadline = t.C
	}
	for len(msgs) < size {
		if deadline == nil {
			// No window: what has arrived already, and no more.
			select {
			case d, ok := <-b.deliveries:
				if !ok {
					return msgs, nil
				}
				msgs = append(msgs, b.message(d))
				continue
			default:
				return msgs, nil
			}
		}
		select {
		case d, ok := <-b.deliveries:
			if !ok {
				return msgs, nil
			}
			msgs = append(msgs, b.message(d))
		case <-deadline:
			return msgs, nil
		case <-ctx.Done():
			return msgs, nil
		}
	}
	return msgs, nil
}

func (b *rabbitBroker) closed() error {
	if b.conn.IsClosed() {
		return fmt.Errorf("the connection to RabbitMQ closed")
	}
	return fmt.Errorf("RabbitMQ cancelled the consumer of queue %q (was it deleted?)", b.queue)
}

func (b *rabbitBroker) message(d amqp.Delivery) *rabbitMessage {
	m := &rabbitMessage{d: d, broker: b, identifier: d.MessageId, attempts: 1}
	if m.identifier == "" {
		// Partial batch failures name records by messageId: one the
		// publisher did not set is made unique to this delivery.
		m.identifier = "nimbus-" + strconv.FormatUint(b.seq.Add(1), 10) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	if n, ok := headerInt(d.Headers[HeaderAttempts]); ok {
		m.attempts = n + 1
	}
	return m
}

func headerInt(v any) (int, bool) {
	switch n := v.(type) {
	case int32:
		return int(n), true
	case int64:
		return int(n), true
	case int:
		return n, true
	}
	return 0, false
}

// RabbitMQEvent is Lambda's Amazon MQ for RabbitMQ event: the batch's
// messages by "<queue>::<virtual host>".
type RabbitMQEvent struct {
	EventSource     string           `json:"eventSource"`
	EventSourceARN  string           `json:"eventSourceArn"`
	MessagesByQueue map[string][]any `json:"rmqMessagesByQueue"`
}

func (b *rabbitBroker) event(records []any) []byte {
	ev, _ := json.Marshal(RabbitMQEvent{EventSource: "aws:rmq", EventSourceARN: b.arn,
		MessagesByQueue: map[string][]any{b.queue + "::" + b.vhost: records}})
	return ev
}

type rabbitMessage struct {
	d          amqp.Delivery
	broker     *rabbitBroker
	identifier string
	attempts   int
}

func (m *rabbitMessage) id() string   { return m.identifier }
func (m *rabbitMessage) attempt() int { return m.attempts }
func (m *rabbitMessage) keepAlive()   {}

func (m *rabbitMessage) release() error { return m.d.Nack(false, true) }

func (m *rabbitMessage) ack(context.Context) error { return m.d.Ack(false) }

// retry publishes the message again with one more attempt counted, then
// acknowledges the original; a copy that is not confirmed leaves the
// original to go back to the queue instead. RabbitMQ has no delayed
// redelivery without a plugin, so the delay is not kept.
func (m *rabbitMessage) retry(ctx context.Context, _ time.Duration) error {
	headers := amqp.Table{}
	for k, v := range m.d.Headers {
		headers[k] = v
	}
	headers[HeaderAttempts] = int32(m.attempts)
	conf, err := m.broker.pub.PublishWithDeferredConfirmWithContext(ctx, "", m.broker.queue, true, false, amqp.Publishing{
		Headers: headers, ContentType: m.d.ContentType, ContentEncoding: m.d.ContentEncoding,
		DeliveryMode: m.d.DeliveryMode, Priority: m.d.Priority, CorrelationId: m.d.CorrelationId,
		ReplyTo: m.d.ReplyTo, Expiration: m.d.Expiration, MessageId: m.d.MessageId, Timestamp: m.d.Timestamp,
		Type: m.d.Type, UserId: m.d.UserId, AppId: m.d.AppId, Body: m.d.Body,
	})
	if err == nil {
		var ok bool
		ok, err = conf.WaitContext(ctx)
		if err == nil && !ok {
			err = fmt.Errorf("RabbitMQ did not confirm the copy")
		}
	}
	if err != nil {
		_ = m.d.Nack(false, true)
		return err
	}
	return m.d.Ack(false)
}

// rabbitMQMessage is a message in Lambda's RabbitMQ event.
type rabbitMQMessage struct {
	BasicProperties rabbitMQProperties `json:"basicProperties"`
	Data            string             `json:"data"`
	Redelivered     bool               `json:"redelivered"`
}

type rabbitMQProperties struct {
	ContentType     string         `json:"contentType"`
	ContentEncoding *string        `json:"contentEncoding"`
	Headers         map[string]any `json:"headers"`
	DeliveryMode    uint8          `json:"deliveryMode"`
	Priority        uint8          `json:"priority"`
	CorrelationID   *string        `json:"correlationId"`
	ReplyTo         *string        `json:"replyTo"`
	Expiration      string         `json:"expiration"`
	MessageID       *string        `json:"messageId"`
	Timestamp       string         `json:"timestamp"`
	Type            *string        `json:"type"`
	UserID          string         `json:"userId"`
	AppID           *string        `json:"appId"`
	ClusterID       *string        `json:"clusterId"`
	BodySize        uint64         `json:"bodySize"`
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (m *rabbitMessage) record() any {
	d := m.d
	id := m.identifier
	p := rabbitMQProperties{
		ContentType: d.ContentType, ContentEncoding: optional(d.ContentEncoding), Headers: headerValues(d.Headers),
		DeliveryMode: d.DeliveryMode, Priority: d.Priority, CorrelationID: optional(d.CorrelationId),
		ReplyTo: optional(d.ReplyTo), Expiration: d.Expiration, MessageID: &id, Type: optional(d.Type),
		UserID: d.UserId, AppID: optional(d.AppId), BodySize: uint64(len(d.Body)),
	}
	if !d.Timestamp.IsZero() {
		// Lambda's format for the AMQP timestamp.
		p.Timestamp = d.Timestamp.UTC().Format("Jan 2, 2006, 3:04:05 PM")
	}
	return rabbitMQMessage{BasicProperties: p, Data: base64.StdEncoding.EncodeToString(d.Body), Redelivered: d.Redelivered || m.attempts > 1}
}

// headerValues makes an AMQP table JSON-friendly: byte strings that are
// text become strings, nested tables and arrays keep their shape.
func headerValues(t amqp.Table) map[string]any {
	if len(t) == 0 {
		return nil
	}
	out := make(map[string]any, len(t))
	for k, v := range t {
		out[k] = headerValue(v)
	}
	return out
}

func headerValue(v any) any {
	switch x := v.(type) {
	case []byte:
		if utf8.Valid(x) {
			return string(x)
		}
		return base64.StdEncoding.EncodeToString(x)
	case amqp.Table:
		return headerValues(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = headerValue(e)
		}
		return out
	case time.Time:
		return x.UTC().Format(time.RFC3339)
	case amqp.Decimal:
		return x.Value
	}
	return v
}
