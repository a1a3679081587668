// Command rabbitmqconsumer is an Amazon MQ for RabbitMQ handler written
// for Lambda with aws-lambda-go (events.RabbitMQEvent), for the RabbitMQ
// event source's tests. Each message's data is {"id", "fail", "sleep_ms"}:
// fail "always" fails the message every time, "once" unless it was
// delivered before. Failures are reported as a partial batch response by
// messageId. It prints one line per message and one per batch, as
// sqsconsumer does.
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
)

type body struct {
	ID      string `json:"id"`
	Fail    string `json:"fail"`
	SleepMs int    `json:"sleep_ms"`
}

type itemFailure struct {
	ItemIdentifier string `json:"itemIdentifier"`
}

type response struct {
	BatchItemFailures []itemFailure `json:"batchItemFailures"`
}

func handle(_ context.Context, ev events.RabbitMQEvent) (response, error) {
	start := time.Now()
	resp := response{BatchItemFailures: []itemFailure{}}
	sleep, n := 0, 0
	for queue, msgs := range ev.MessagesByQueue {
		for _, m := range msgs {
			n++
			data, err := base64.StdEncoding.DecodeString(m.Data)
			var b body
			if err == nil {
				err = json.Unmarshal(data, &b)
			}
			id := ""
			if m.BasicProperties.MessageID != nil {
				id = *m.BasicProperties.MessageID
			}
			if err != nil {
				resp.BatchItemFailures = append(resp.BatchItemFailures, itemFailure{id})
				continue
			}
			fmt.Printf("record %s redelivered %t queue %s source %s\n", b.ID, m.Redelivered, queue, ev.EventSource)
			sleep = max(sleep, b.SleepMs)
			if b.Fail == "always" || (b.Fail == "once" && !m.Redelivered) {
				resp.BatchItemFailures = append(resp.BatchItemFailures, itemFailure{id})
			}
		}
	}
	time.Sleep(time.Duration(sleep) * time.Millisecond)
	fmt.Printf("batch %d %d %d\n", start.UnixNano(), time.Now().UnixNano(), n)
	return resp, nil
}

func main() { lambda.Start(handle) }
