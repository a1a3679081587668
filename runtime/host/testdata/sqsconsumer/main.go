// Command sqsconsumer is an SQS batch handler written for Lambda with
// aws-lambda-go (events.SQSEvent, events.SQSEventResponse), for the NATS
// event source's tests. Each record's body is {"id", "fail", "sleep_ms"}:
// fail "always" fails the record every time, "once" on its first
// delivery. It prints one line per record and one per batch, with the
// batch's start and end, so that the tests can count what ran and how
// many batches overlapped.
package main

import (
	"context"
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

func handle(_ context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	start := time.Now()
	var resp events.SQSEventResponse
	sleep := 0
	for _, r := range ev.Records {
		var b body
		if err := json.Unmarshal([]byte(r.Body), &b); err != nil {
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: r.MessageId})
			continue
		}
		attempt := r.Attributes["ApproximateReceiveCount"]
		fmt.Printf("record %s attempt %s\n", b.ID, attempt)
		sleep = max(sleep, b.SleepMs)
		if b.Fail == "always" || (b.Fail == "once" && attempt == "1") {
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: r.MessageId})
		}
	}
	time.Sleep(time.Duration(sleep) * time.Millisecond)
	fmt.Printf("batch %d %d %d\n", start.UnixNano(), time.Now().UnixNano(), len(ev.Records))
	return resp, nil
}

func main() { lambda.Start(handle) }
