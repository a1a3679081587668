package agents

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// RabbitMQServer is Debian's rabbitmq-server (the broker itself, not the
// wrapper that switches to the rabbitmq user); `.ci/run` installs it.
var RabbitMQServer = Binary{Name: "rabbitmq-server", EnvVar: "NIMBUS_RABBITMQ_SERVER_BIN", Default: "/usr/lib/rabbitmq/bin/rabbitmq-server"}

// Epmd is Erlang's port mapper, which the broker's node registers with;
// each RabbitMQ the harness starts gets one of its own, on its own port.
var Epmd = Binary{Name: "epmd", EnvVar: "NIMBUS_EPMD_BIN", Default: "/usr/bin/epmd"}

// RabbitMQConfig is one RabbitMQ node on loopback ports of its own.
type RabbitMQConfig struct {
	// Port is the AMQP port; Port+1 is epmd's and Port+2 the node's
	// distribution port.
	Port int
	Dir  string // the node's data, logs and configuration
	// GatewayRead is the regular expression of the queues the gateway's
	// user may consume.
	GatewayRead string
	Detach      bool
}

// RabbitMQ is a running node and its principals' credentials.
type RabbitMQ struct {
	URL     string // amqp://127.0.0.1:<port>/ without credentials
	Admin   NATSUser
	Gateway NATSUser
	Proc    *Process
	Epmd    *Process
	cfg     RabbitMQConfig
	env     []string
}

// StartRabbitMQ writes the node's configuration and definitions (an
// administrator, and the gateway's user with least privilege: consume the
// GatewayRead queues, publish to the default exchange to put a failed
// record back, configure nothing), starts it, and waits until the
// administrator can log in.
func StartRabbitMQ(ctx context.Context, cfg RabbitMQConfig) (*RabbitMQ, error) {
	bin, err := RabbitMQServer.Path()
	if err != nil {
		return nil, err
	}
	epmd, err := Epmd.Path()
	if err != nil {
		return nil, err
	}
	r := &RabbitMQ{URL: fmt.Sprintf("amqp://127.0.0.1:%d/", cfg.Port), cfg: cfg,
		Admin: NATSUser{"admin", secret()}, Gateway: NATSUser{"nimbus-gateway", secret()}}
	for _, d := range []string{"mnesia", "log"} {
		if err := os.MkdirAll(filepath.Join(cfg.Dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	defs := map[string]any{
		"users": []map[string]any{
			{"name": r.Admin.User, "password_hash": rabbitHash(r.Admin.Password), "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": []string{"administrator"}},
			{"name": r.Gateway.User, "password_hash": rabbitHash(r.Gateway.Password), "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": []string{}},
		},
		"vhosts": []map[string]any{{"name": "/"}},
		"permissions": []map[string]any{
			{"user": r.Admin.User, "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"},
			{"user": r.Gateway.User, "vhost": "/", "configure": "^$", "write": `^amq\.default$`, "read": cfg.GatewayRead},
		},
	}
	b, _ := json.Marshal(defs)
	defsPath := filepath.Join(cfg.Dir, "definitions.json")
	if err := os.WriteFile(defsPath, b, 0o600); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf("# Written by the Nimbus test harness.\nlisteners.tcp.default = 127.0.0.1:%d\nload_definitions = %s\nloopback_users = none\nlog.console = true\nlog.file = false\n", cfg.Port, defsPath)
	if err := os.WriteFile(filepath.Join(cfg.Dir, "rabbitmq.conf"), []byte(conf), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(cfg.Dir, "enabled_plugins"), []byte("[].\n"), 0o644); err != nil {
		return nil, err
	}
	epmdPort := cfg.Port + 1
	r.env = []string{
		"HOME=" + cfg.Dir, // the Erlang cookie
		"RABBITMQ_NODENAME=nimbus" + strconv.Itoa(cfg.Port) + "@localhost",
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_NODE_PORT=" + strconv.Itoa(cfg.Port),
		"RABBITMQ_DIST_PORT=" + strconv.Itoa(cfg.Port+2),
		"ERL_EPMD_ADDRESS=127.0.0.1",
		"ERL_EPMD_PORT=" + strconv.Itoa(epmdPort),
		"RABBITMQ_CONFIG_FILE=" + filepath.Join(cfg.Dir, "rabbitmq.conf"),
		"RABBITMQ_ENABLED_PLUGINS_FILE=" + filepath.Join(cfg.Dir, "enabled_plugins"),
		"RABBITMQ_MNESIA_BASE=" + filepath.Join(cfg.Dir, "mnesia"),
		"RABBITMQ_LOG_BASE=" + filepath.Join(cfg.Dir, "log"),
		"RABBITMQ_PID_FILE=" + filepath.Join(cfg.Dir, "rabbitmq.pid"),
		"RABBITMQ_CONF_ENV_FILE=" + filepath.Join(cfg.Dir, "rabbitmq-env.conf"),
		"RABBITMQ_ADVANCED_CONFIG_FILE=" + filepath.Join(cfg.Dir, "advanced.config"),
	}
	if r.Epmd, err = Start("epmd", epmd, []string{"-port", strconv.Itoa(epmdPort), "-address", "127.0.0.1"},
		filepath.Join(cfg.Dir, "epmd.log"), StartOptions{Detach: cfg.Detach, Env: r.env}); err != nil {
		return nil, err
	}
	return r, r.start(ctx, bin)
}

func (r *RabbitMQ) start(ctx context.Context, bin string) error {
	var err error
	if r.Proc, err = Start("rabbitmq-server", bin, nil, filepath.Join(r.cfg.Dir, "rabbitmq.log"), StartOptions{Detach: r.cfg.Detach, Env: r.env}); err != nil {
		return err
	}
	return r.Wait(ctx)
}

// rabbitHash is RabbitMQ's rabbit_password_hashing_sha256 of a password:
// base64 of a 4-byte salt and SHA-256(salt, password).
func rabbitHash(password string) string {
	salt := make([]byte, 4)
	_, _ = rand.Read(salt)
	sum := sha256.Sum256(append(append([]byte{}, salt...), password...))
	return base64.StdEncoding.EncodeToString(append(salt, sum[:]...))
}

// AdminURL is the URL with the administrator's credentials, for tests.
func (r *RabbitMQ) AdminURL() string {
	return fmt.Sprintf("amqp://%s:%s@127.0.0.1:%d/", r.Admin.User, r.Admin.Password, r.cfg.Port)
}

// Wait returns once the administrator can log in.
func (r *RabbitMQ) Wait(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		conn, err := amqp.Dial(r.AdminURL())
		if err == nil {
			return conn.Close()
		}
		select {
		case <-r.Proc.Exited():
			return fmt.Errorf("rabbitmq-server exited: %w; see %s", r.Proc.ExitError(), r.Proc.LogPath)
		case <-ctx.Done():
			return fmt.Errorf("rabbitmq-server did not accept connections at %s: %w; see %s", r.URL, err, r.Proc.LogPath)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Restart stops the node gracefully and starts it again on the same
// data, as an operator's restart would.
func (r *RabbitMQ) Restart(ctx context.Context) error {
	r.Proc.Stop(60 * time.Second)
	bin, err := RabbitMQServer.Path()
	if err != nil {
		return err
	}
	return r.start(ctx, bin)
}

// Stop stops the node and its epmd.
func (r *RabbitMQ) Stop() {
	if r.Proc != nil {
		r.Proc.Stop(60 * time.Second)
	}
	if r.Epmd != nil {
		r.Epmd.Stop(5 * time.Second)
	}
}
