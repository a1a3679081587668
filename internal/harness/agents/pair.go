package agents

import (
	"context"
	"fmt"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/nimbus-faas/terraform-provider-nimbus/internal/clients"
)

// Launcher starts one agent with its configuration file, or finds it
// already running (then it returns a nil Process).
type Launcher func(name string, bin Binary, args []string) (*Process, error)

// PairConfig describes a Consul agent and a Nomad agent started together.
type PairConfig struct {
	ConfigDir string
	Consul    ConsulConfig
	Nomad     NomadConfig
	// Tokens turns ACLs on (Consul with default deny) and bootstraps both
	// agents with them; nil leaves ACLs off.
	Tokens *Tokens
	Launch Launcher
}

// Pair is a running Consul and Nomad. Its clients carry the management
// tokens when ACLs are on.
type Pair struct {
	ConsulAddr, NomadAddr string
	Consul                *consulapi.Client
	Nomad                 *nomadapi.Client
	ConsulProc, NomadProc *Process // nil if they were already running
	Tokens                *Tokens
}

// StartPair starts Consul, sets up its ACLs, starts Nomad with its Consul
// token, bootstraps Nomad's ACLs and waits until Nomad has a ready node
// with a healthy exec driver. On error, the processes it started are
// returned in the Pair so that the caller can stop them and show their logs.
func StartPair(ctx context.Context, cfg PairConfig) (*Pair, error) {
	p := &Pair{
		ConsulAddr: fmt.Sprintf("http://127.0.0.1:%d", cfg.Consul.Ports.HTTP),
		NomadAddr:  fmt.Sprintf("http://127.0.0.1:%d", cfg.Nomad.Ports.HTTP),
		Tokens:     cfg.Tokens,
	}
	cfg.Consul.ACL, cfg.Nomad.ACL = cfg.Tokens, cfg.Tokens
	var consulToken, nomadToken string
	if cfg.Tokens != nil {
		consulToken, nomadToken = cfg.Tokens.ConsulManagement, cfg.Tokens.NomadManagement
	}

	consulFile, err := WriteConfig(cfg.ConfigDir, "consul.hcl", cfg.Consul.HCL())
	if err != nil {
		return p, err
	}
	if p.ConsulProc, err = cfg.Launch("consul", Consul, []string{"agent", "-config-file", consulFile}); err != nil {
		return p, err
	}
	if p.Consul, err = clients.NewConsul(clients.ConsulConfig{Address: p.ConsulAddr, Token: consulToken}, clients.DefaultRetryPolicy, nil); err != nil {
		return p, err
	}
	if err := WaitConsul(ctx, p.ConsulProc, p.Consul); err != nil {
		return p, err
	}
	if cfg.Tokens != nil {
		if err := Poll(ctx, p.ConsulProc, "Consul's ACL set-up", func() (bool, error) {
			err := SetUpConsulACL(ctx, p.Consul, *cfg.Tokens)
			return err == nil, err
		}); err != nil {
			return p, err
		}
	}

	nomadFile, err := WriteConfig(cfg.ConfigDir, "nomad.hcl", cfg.Nomad.HCL())
	if err != nil {
		return p, err
	}
	if p.NomadProc, err = cfg.Launch("nomad", Nomad, []string{"agent", "-config", nomadFile}); err != nil {
		return p, err
	}
	if p.Nomad, err = clients.NewNomad(clients.NomadConfig{Address: p.NomadAddr, Token: nomadToken}, clients.DefaultRetryPolicy, nil); err != nil {
		return p, err
	}
	if cfg.Tokens != nil {
		if err := BootstrapNomadACL(ctx, p.NomadProc, p.Nomad, nomadToken); err != nil {
			return p, err
		}
	}
	return p, WaitNomad(ctx, p.NomadProc, p.Nomad)
}
