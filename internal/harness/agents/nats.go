package agents

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// NATSServer is the pinned nats-server that `make tools` builds.
var NATSServer = Binary{Name: "nats-server", EnvVar: "NIMBUS_NATS_SERVER_BIN"}

// NATSConfig is one nats-server with JetStream, on loopback.
type NATSConfig struct {
	Port    int
	DataDir string // JetStream's file storage
	// ConfigDir receives the server's configuration.
	ConfigDir string
	// LogPath is the server's log (default: nats-server.log in ConfigDir).
	LogPath string
	Detach  bool
	// Gateway and Admin are the users' credentials; empty ones are made.
	Gateway, Admin NATSUser
	// SourceStreams are the streams event sources may read: the gateway
	// gets the consumer rights on them that the permissions file lists.
	SourceStreams []string
}

// NATS is a running nats-server and its principals' credentials.
type NATS struct {
	URL     string
	Proc    *Process
	Gateway NATSUser // the gateway's least-privilege user
	Admin   NATSUser // every right, for the operator and the tests
	config  string
}

// NATSUser is a user's credentials.
type NATSUser struct{ User, Password string }

// Options are the nats.go options that log in as the user.
func (u NATSUser) Options() []nats.Option { return []nats.Option{nats.UserInfo(u.User, u.Password)} }

// StartNATS writes the configuration (the gateway's permissions come from
// examples/platform/nats, as operators include them), starts the server
// and waits until the admin can use JetStream.
func StartNATS(ctx context.Context, cfg NATSConfig) (*NATS, error) {
	bin, err := NATSServer.Path()
	if err != nil {
		return nil, err
	}
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	perms, err := os.ReadFile(filepath.Join(root, "examples", "platform", "nats", "gateway-permissions.conf"))
	if err != nil {
		return nil, err
	}
	perms = grantSourceStreams(perms, cfg.SourceStreams)
	if err := os.WriteFile(filepath.Join(cfg.ConfigDir, "gateway-permissions.conf"), perms, 0o600); err != nil {
		return nil, err
	}
	n := &NATS{URL: fmt.Sprintf("nats://127.0.0.1:%d", cfg.Port), Gateway: cfg.Gateway, Admin: cfg.Admin}
	if n.Gateway.User == "" {
		n.Gateway = NATSUser{"nimbus-gateway", secret()}
	}
	if n.Admin.User == "" {
		n.Admin = NATSUser{"admin", secret()}
	}
	logPath := cfg.LogPath
	if logPath == "" {
		logPath = filepath.Join(cfg.ConfigDir, "nats-server.log")
	}
	conf := fmt.Sprintf(`# Written by the Nimbus test harness.
listen: "127.0.0.1:%d"
server_name: nimbus-nats
jetstream {
  store_dir: %q
  max_file_store: 2G
  max_memory_store: 64M
}
include ./gateway-permissions.conf
authorization {
  users = [
    { user: %q, password: %q, permissions: $NIMBUS_GATEWAY_PERMISSIONS }
    { user: %q, password: %q }
  ]
}
`, cfg.Port, cfg.DataDir, n.Gateway.User, n.Gateway.Password, n.Admin.User, n.Admin.Password)
	path := filepath.Join(cfg.ConfigDir, "nats-server.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	n.config = path
	if n.Proc, err = Start("nats-server", bin, []string{"-c", path}, logPath, StartOptions{Detach: cfg.Detach}); err != nil {
		return nil, err
	}
	return n, n.Wait(ctx)
}

// sourceStreamsMarker is the line of the permissions file where an
// operator lists the grants of each stream event sources read.
const sourceStreamsMarker = "# nimbus-event-source-streams"

// grantSourceStreams adds the documented grants for each stream at the
// marker, as an operator would.
func grantSourceStreams(perms []byte, streams []string) []byte {
	var grants strings.Builder
	for _, s := range streams {
		for _, subject := range []string{"$JS.API.STREAM.INFO.%s", "$JS.API.CONSUMER.CREATE.%s.>", "$JS.API.CONSUMER.DURABLE.CREATE.%s.>", "$JS.API.CONSUMER.INFO.%s.>",
			"$JS.API.CONSUMER.DELETE.%s.>", "$JS.API.CONSUMER.MSG.NEXT.%s.>", "$JS.ACK.%s.>"} {
			fmt.Fprintf(&grants, "      %q,\n", fmt.Sprintf(subject, s))
		}
	}
	return []byte(strings.Replace(string(perms), "      "+sourceStreamsMarker+"\n", grants.String(), 1))
}

func secret() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Restart stops the server gracefully and starts it again on the same
// configuration and storage, as an operator's restart would.
func (n *NATS) Restart(ctx context.Context) error {
	n.Proc.Stop(10 * time.Second)
	bin, err := NATSServer.Path()
	if err != nil {
		return err
	}
	if n.Proc, err = Start("nats-server", bin, []string{"-c", n.config}, n.Proc.LogPath, StartOptions{}); err != nil {
		return err
	}
	return n.Wait(ctx)
}

// Wait returns once the admin can connect.
func (n *NATS) Wait(ctx context.Context) error {
	for {
		nc, err := nats.Connect(n.URL, append(n.Admin.Options(), nats.Timeout(time.Second))...)
		if err == nil {
			nc.Close()
			return nil
		}
		select {
		case <-n.exited():
			return fmt.Errorf("nats-server exited: %w; see %s", n.Proc.ExitError(), n.Proc.LogPath)
		case <-ctx.Done():
			return fmt.Errorf("nats-server did not accept connections at %s: %w", n.URL, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// exited is the server's exit, when this process started it.
func (n *NATS) exited() <-chan struct{} {
	if n.Proc == nil {
		return nil
	}
	return n.Proc.Exited()
}
