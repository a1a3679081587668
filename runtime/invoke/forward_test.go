package invoke

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

// endless is an instance that never stops answering.
type endless struct{ sent int64 }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	e.sent += int64(len(p))
	return len(p), nil
}

func (*endless) Close() error { return nil }

// An instance whose answer never ends (a handler answering in its host's
// place) costs the gateway a result's worth of memory, not all of it.
func TestAnInstanceCannotAnswerMoreThanAResult(t *testing.T) {
	body := &endless{}
	_, err := readAnswer(&http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: body})
	if !errors.Is(err, errAnswerTooLarge) {
		t.Fatalf("an endless answer: %v, want errAnswerTooLarge", err)
	}
	if body.sent > 2*maxAnswerBytes {
		t.Errorf("the gateway read %d bytes of it; at most about %d", body.sent, maxAnswerBytes)
	}
	a, err := readAnswer(&http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(strings.Repeat("y", 6<<20)))})
	if err != nil || len(a.Body) != 6<<20 {
		t.Errorf("a 6 MB result must pass whole: %v", err)
	}
}
