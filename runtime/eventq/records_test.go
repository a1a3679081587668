package eventq

import "testing"

// A failure record names the function its target names, with the
// qualifier where Lambda shows one.
func TestFailureRecordsNameTheQualifiedFunction(t *testing.T) {
	for target, arn := range map[string]string{
		"fn":         "arn:aws:lambda:nimbus:000000000000:function:fn:$LATEST",
		"fn:$LATEST": "arn:aws:lambda:nimbus:000000000000:function:fn:$LATEST",
		"fn:3":       "arn:aws:lambda:nimbus:000000000000:function:fn:3",
		"fn:live":    "arn:aws:lambda:nimbus:000000000000:function:fn:live",
	} {
		rc := LambdaRecord("r", target, "RetriesExhausted", 1)["requestContext"].(map[string]any)
		if rc["functionArn"] != arn {
			t.Errorf("the record of %s names %v; want %s", target, rc["functionArn"], arn)
		}
	}

}
