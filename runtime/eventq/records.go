package eventq

import (
	"cmp"
	"encoding/json"
	"time"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/model"
)

// LambdaRecord is what Lambda's destination and failure records share:
// their version, time and request context. target is what was invoked, a
// function or <name>:<qualifier>; the ARN names its qualifier, $LATEST
// when it has none, as Lambda's do.
func LambdaRecord(requestID, target, condition string, attempts int) map[string]any {
	function, qualifier := model.SplitQualified(target)
	return map[string]any{
		"version":   "1.0",
		"timestamp": time.Now().UTC().Format("2006-01-02T15:04:05.000Z"),
		"requestContext": map[string]any{
			"requestId":              requestID,
			"functionArn":            "arn:aws:lambda:nimbus:000000000000:function:" + function + ":" + cmp.Or(qualifier, model.Latest),
			"condition":              condition,
			"approximateInvokeCount": attempts,
		},
	}
}

// OrNull keeps a payload that is JSON, and says null for one that is not.
func OrNull(b []byte) []byte {
	if len(b) == 0 || !json.Valid(b) {
		return []byte("null")
	}
	return b
}
