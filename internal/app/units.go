package app

import (
	"context"
	"io"
	"os"
	"slices"
	"time"

	"github.com/kgrpc/platform/internal/cli"
	"github.com/kgrpc/platform/ordersvc"
)

// Unit is a binary of cmd/: its name, the flags it takes beyond Shared (rows
// of the flag table, "name=default" where its default differs) and what it
// runs with the parsed settings.
type Unit struct {
	// Name is the binary's name, as in cmd/<Name>.
	Name string
	// Flags are the table rows the binary takes besides Shared.
	Flags []string
	// Run runs the unit until ctx ends. A cli.UsageError exits with code 2.
	Run func(ctx context.Context, s Settings) error
}

// FlagTable returns the unit's flags bound to s: Shared first, then its own.
func (u Unit) FlagTable(s *Settings) []cli.Flag {
	return s.Flags(append(slices.Clone(Shared), u.Flags...)...)
}

// Parse parses args with defaults from env, as the binary does.
func (u Unit) Parse(args []string, env cli.Lookup) (Settings, error) {
	var s Settings
	err := cli.Parse(u.Name, u.FlagTable(&s), args, env, io.Discard)
	return s, err
}

// Main is the main function of the unit's binary: flags and variables, then
// Run until SIGINT or SIGTERM.
func Main(u Unit) {
	var s Settings
	cli.Main(u.Name, u.FlagTable(&s), os.LookupEnv, func(ctx context.Context) error { return u.Run(ctx, s) })
}

// deployable returns the Unit of a one-unit binary: its Run checks the
// shared settings, runs run (with /healthz and /readyz on --http-addr when
// health is set), and logs how it ended.
func deployable(name string, flags []string, health bool, run func(ctx context.Context, s Settings, c Common, ready *Ready) error) Unit {
	return Unit{Name: name, Flags: flags, Run: func(ctx context.Context, s Settings) error {
		c, err := s.Common(name)
		if err != nil {
			return err
		}
		defer func() {
			// The spans still buffered go out, within a bound.
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := c.Telemetry.Shutdown(sctx); err != nil {
				c.Logger.Warn("export the last spans", "err", err)
			}
		}()
		stopProfiles, err := ServeProfiles(ctx, s.PprofAddr, c.Logger)
		if err != nil {
			return cli.UsageError{Err: err}
		}
		defer stopProfiles()
		ready := new(Ready)
		unit := func(ctx context.Context) error { return run(ctx, s, c, ready) }
		if health {
			err = runWithHealth(ctx, s.HTTPAddr, ready, c.Logger, c.Telemetry.Handler(), unit)
		} else {
			err = unit(ctx)
		}
		if err != nil {
			c.Logger.Error(name+" failed", "err", err)
			return cli.Logged(err)
		}
		c.Logger.Info(name + " stopped")
		return nil
	}}
}

// Gateway is cmd/gateway: the REST API.
var Gateway = deployable("gateway", []string{"http-addr=:8080", "request-timeout", "max-stream-duration", "max-streams-per-user", "max-inflight-per-service", "reply-partition", "cors-origins", "auth-rate-limit"}, false,
	func(ctx context.Context, s Settings, c Common, _ *Ready) error {
		c.PinReplyPartition(s.ReplyPartition)
		cfg, err := s.Gateway()
		if err != nil {
			return err
		}
		return RunGateway(ctx, c, cfg)
	})

// Users is cmd/usersvc: the users service.
var Users = deployable("usersvc", []string{"db=./data/users.db", "http-addr", "idempotency-ttl", "token-ttl", "admin-email", "admin-password"}, true,
	func(ctx context.Context, s Settings, c Common, ready *Ready) error {
		return RunUsers(ctx, c, UsersConfig{ServiceConfig: ServiceConfig{DB: s.DB, Ready: ready, IdempotencyTTL: s.IdempotencyTTL},
			Admin: AdminSeed{Email: s.AdminEmail, Password: s.AdminPassword}, TokenTTL: s.TokenTTL})
	})

// Products is cmd/productsvc: the products service.
var Products = deployable("productsvc", []string{"db=./data/products.db", "http-addr", "idempotency-ttl", "seed-demo"}, true,
	func(ctx context.Context, s Settings, c Common, ready *Ready) error {
		return RunProducts(ctx, c, ProductsConfig{ServiceConfig: ServiceConfig{DB: s.DB, Ready: ready, IdempotencyTTL: s.IdempotencyTTL}, SeedDemo: s.SeedDemo})
	})

// Orders is cmd/ordersvc: the orders service.
var Orders = deployable("ordersvc", []string{"db=./data/orders.db", "http-addr", "idempotency-ttl", "recover-after=" + ordersvc.DefaultRecoverAfter.String(), "reply-partition"}, true,
	func(ctx context.Context, s Settings, c Common, ready *Ready) error {
		c.PinReplyPartition(s.ReplyPartition)
		return RunOrders(ctx, c, OrdersConfig{ServiceConfig: ServiceConfig{DB: s.DB, Ready: ready, IdempotencyTTL: s.IdempotencyTTL}, RecoverAfter: s.RecoverAfter})
	})

// Deployables are the one-unit binaries by name.
var Deployables = map[string]Unit{Gateway.Name: Gateway, Users.Name: Users, Products.Name: Products, Orders.Name: Orders}
