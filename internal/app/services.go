package app

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"buf.build/go/protovalidate"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/reflect/protoreflect"

	ordersv1 "github.com/kgrpc/platform/gen/shop/orders/v1"
	productsv1 "github.com/kgrpc/platform/gen/shop/products/v1"
	usersv1 "github.com/kgrpc/platform/gen/shop/users/v1"
	"github.com/kgrpc/platform/internal/auth"
	"github.com/kgrpc/platform/internal/outbox"
	"github.com/kgrpc/platform/internal/sqlstore"
	"github.com/kgrpc/platform/kafkatransport"
	"github.com/kgrpc/platform/ordersvc"
	"github.com/kgrpc/platform/productsvc"
	"github.com/kgrpc/platform/usersvc"
)

// AdminSeed names an admin account to create (or promote) at start. Empty
// Email means none.
type AdminSeed struct {
	Email, Password string
}

// adminDisplayName names a seeded admin account when it is created.
const adminDisplayName = "Admin"

// ServiceConfig is what every service unit takes.
type ServiceConfig struct {
	// DB is the database: a SQLite file path or a postgres:// URL.
	DB string
	// Ready, when not nil, is set once the service consumes requests, and
	// watches the Health of its transport server and subscribers, and its
	// database (SELECT 1 within DBCheckTimeout).
	Ready *Ready
	// IdempotencyTTL is how long the outcomes of calls with side effects
	// are kept (see kafkatransport/idempotency); zero means
	// sqlstore.DefaultIdempotencyTTL.
	IdempotencyTTL time.Duration
}

// UsersConfig configures the users service unit.
type UsersConfig struct {
	ServiceConfig
	// Admin is seeded at start when set.
	Admin AdminSeed
	// TokenTTL is how long user tokens last; zero means
	// auth.DefaultTokenTTL.
	TokenTTL time.Duration
}

// RunUsers serves the users service until ctx ends.
func RunUsers(ctx context.Context, c Common, cfg UsersConfig) error {
	return runService(ctx, c, UnitUsers, cfg.ServiceConfig, usersv1.File_shop_users_v1_events_proto, usersvc.Open, func(ctx context.Context, u *serviceUnit, repo *usersvc.SQLRepository) error {
		issuer, err := auth.NewIssuer(c.Trust.Keys[UnitUsers].Current(), cfg.TokenTTL)
		if err != nil {
			return err
		}
		svc, err := usersvc.New(usersvc.Config{Repo: repo, Issuer: issuer, Logger: u.log, Notify: u.relay.Notify, Rules: u.rules})
		if err != nil {
			return err
		}
		if a := cfg.Admin; a.Email != "" {
			if err := svc.EnsureAdmin(ctx, a.Email, a.Password, adminDisplayName); err != nil {
				return fmt.Errorf("seed admin %s: %w", a.Email, err)
			}
			u.log.Info("admin account ready", "email", a.Email)
		}
		usersv1.RegisterUserServiceKafkaServer(u.srv, svc)
		return nil
	})
}

// ProductsConfig configures the products service unit.
type ProductsConfig struct {
	ServiceConfig
	// SeedDemo loads the demo catalog when the catalog is empty.
	SeedDemo bool
}

// RunProducts serves the products service, and releases the stock of
// cancelled orders from their OrderStatusChanged events, until ctx ends.
func RunProducts(ctx context.Context, c Common, cfg ProductsConfig) error {
	return runService(ctx, c, UnitProducts, cfg.ServiceConfig, productsv1.File_shop_products_v1_events_proto, productsvc.Open, func(ctx context.Context, u *serviceUnit, repo *productsvc.SQLRepository) error {
		svc, err := productsvc.New(productsvc.Config{Repo: repo, Logger: u.log, Notify: u.relay.Notify, Rules: u.rules})
		if err != nil {
			return err
		}
		if cfg.SeedDemo {
			seeded, err := svc.SeedDemoCatalog(ctx)
			if err != nil {
				return fmt.Errorf("seed demo catalog: %w", err)
			}
			if seeded {
				u.log.Info("demo catalog loaded")
			}
		}
		productsv1.RegisterProductServiceKafkaServer(u.srv, svc)
		sub, err := kafkatransport.NewSubscriber(c.Brokers, "shop.products.v1.ProductService.events", c.subscriberOptions(u.unitEnv)...)
		if err != nil {
			return err
		}
		ordersv1.SubscribeOrderStatusChanged(sub, svc.HandleOrderStatusChanged)
		u.loops = append(u.loops, sub.Run)
		u.health = append(u.health, sub.Health)
		return nil
	})
}

// OrdersConfig configures the orders service unit.
type OrdersConfig struct {
	ServiceConfig
	// RecoverAfter is ordersvc.Config.RecoverAfter: how long after an order
	// attempt began its stock is released when it stored no order. Zero
	// means ordersvc.DefaultRecoverAfter.
	RecoverAfter time.Duration
}

// RunOrders serves the orders service until ctx ends. It calls the products
// service over Kafka to reserve stock.
func RunOrders(ctx context.Context, c Common, cfg OrdersConfig) error {
	if cfg.RecoverAfter < 0 || (cfg.RecoverAfter != 0 && cfg.RecoverAfter <= ordersvc.DefaultCallTimeout) {
		// Checked before connecting, so a bad flag fails at once.
		return fmt.Errorf("--recover-after %v must exceed the %v call timeout to the product service", cfg.RecoverAfter, ordersvc.DefaultCallTimeout)
	}
	return runService(ctx, c, UnitOrders, cfg.ServiceConfig, ordersv1.File_shop_orders_v1_events_proto, ordersvc.Open, func(ctx context.Context, u *serviceUnit, repo *ordersvc.SQLRepository) error {
		// ReserveStock and the recovery sweep fail at once while the
		// product service is down, instead of each waiting 10s.
		b, err := newBreaker(u.unitEnv, 0)
		if err != nil {
			return err
		}
		conn, err := kafkatransport.Dial(ctx, c.Brokers, c.clientOptions(u.unitEnv, b)...)
		if err != nil {
			return err
		}
		u.closers = append(u.closers, func() { _ = conn.Close() })
		// Every instance reads every status change, from now on, for the
		// WatchOrder streams it serves.
		watches, since := ordersvc.NewWatches(), time.Now()
		svc, err := ordersvc.New(ordersvc.Config{
			Repo:     repo,
			Products: productsv1.NewProductServiceClient(conn.Service(productsv1.ProductServiceKafkaSpec)),
			Logger:   u.log,
			Notify:   u.relay.Notify,
			Watches:  watches,

			RecoverAfter: cfg.RecoverAfter,
		})
		if err != nil {
			return err
		}
		ordersv1.RegisterOrderServiceKafkaServer(u.srv, svc)
		u.loops = append(u.loops, svc.RecoverReservations, func(ctx context.Context) error {
			return kafkatransport.Watch(ctx, c.Brokers, ordersv1.OrderStatusChangedKafkaEvent, since, watches.Publish, nil, c.subscriberOptions(u.unitEnv)...)
		})
		return nil
	})
}

// serviceUnit is what every service unit runs besides its service: a
// logger, the outbox relay of its store, the transport server with the
// shop's interceptors, and what build adds.
type serviceUnit struct {
	unitEnv
	relay *outbox.Relay
	srv   *kafkatransport.Server
	// rules are the buf.validate rules the server checks requests with.
	rules protovalidate.Validator
	// loops run next to the server and the relay until ctx ends.
	loops []func(context.Context) error
	// health are the Health methods of the subscribers build adds; with
	// the server's, they make the unit's readiness.
	health []func() error
	// closers run, last first, once everything has stopped.
	closers []func()
}

// store is a service's repository as runService needs it.
type store interface {
	DB() *sql.DB
	SQL() *sqlstore.DB
	Close() error
}

// runService runs a service unit until ctx ends: it opens the store of
// cfg.DB with open, creates the topics of the unit's events (declared in
// the file events), starts
// an outbox relay publishing its events, builds a transport server, lets
// build register the service (and add loops and closers), then serves,
// relays and runs the loops until ctx ends or one fails, and sets ready once
// the server consumes requests; from then on ready also follows the Health
// of the server and of the subscribers build adds, and the database. The
// server also serves grpc.health.v1.Health on the unit's own topic
// (serveHealth), from the same checks. Everything it opened is closed on return.
func runService[R store](ctx context.Context, c Common, name string, cfg ServiceConfig, events protoreflect.FileDescriptor, open func(ctx context.Context, dsn string) (R, error), build func(context.Context, *serviceUnit, R) error) error {
	env, err := c.unit(name)
	if err != nil {
		return err
	}
	u := &serviceUnit{unitEnv: env}
	ttl := cfg.IdempotencyTTL
	switch {
	case ttl < 0:
		return fmt.Errorf("--idempotency-ttl %v must not be negative", ttl)
	case ttl == 0:
		ttl = sqlstore.DefaultIdempotencyTTL
	}
	repo, err := open(ctx, cfg.DB)
	if err != nil {
		return err
	}
	defer repo.Close()
	pub, err := kafkatransport.NewPublisher(c.Brokers, c.publisherOptions(u.unitEnv)...)
	if err != nil {
		return err
	}
	defer pub.Close(context.WithoutCancel(ctx))
	// The topics of the unit's events exist from now on, for subscribers
	// in any language, not only once each type is first published.
	if err := pub.CreateTopics(ctx, events); err != nil {
		return err
	}
	u.relay = outbox.NewRelay(repo.SQL().Writer(), outbox.PublishTo(pub, name), u.log)
	if u.tel != nil {
		if err := u.tel.Registerer.Register(outbox.NewCollector(repo.DB())); err != nil { // the readers: a scrape waits for no write
			return fmt.Errorf("register outbox metrics: %w", err)
		}
	}
	idem := sqlstore.NewIdempotency(repo.SQL(), u.relay.Notify)
	rev := auth.NewRevocations()
	// One validator per unit: its server's interceptor and the service
	// (which checks what the interceptor passes unchecked) share it.
	if u.rules, err = protovalidate.New(); err != nil {
		return fmt.Errorf("validation rules: %w", err)
	}
	if u.srv, err = c.newServer(u.unitEnv, idem, rev, u.rules); err != nil {
		return err
	}
	u.loops = append(u.loops, func(ctx context.Context) error { return rev.Watch(ctx, c.Brokers, u.kafka, c.topicOptions()) })
	u.health = append(u.health, rev.Health)
	u.loops = append(u.loops, func(ctx context.Context) error { return idem.ExpireLoop(ctx, ttl, u.log) })
	defer func() {
		for _, closeFn := range slices.Backward(u.closers) {
			closeFn()
		}
	}()
	if err := build(ctx, u, repo); err != nil {
		return err
	}
	checks := u.serveHealth(name, repo.DB())
	// Server reflection, for tools such as cmd/kgrpc, on the unit's own
	// topic; the Guard lets the gateway's key call it.
	kafkatransport.RegisterReflection(u.srv, name)
	g, gctx := errgroup.WithContext(ctx)
	for _, run := range append([]func(context.Context) error{u.srv.Serve, u.relay.Run}, u.loops...) {
		g.Go(func() error { return stopped(gctx, run(gctx)) })
	}
	cfg.Ready.Watch(checks...)
	g.Go(func() error { return cfg.Ready.follow(gctx, u.srv.Ready()) })
	return g.Wait()
}

// DBPaths returns the SQLite files of the three services in dataDir.
func DBPaths(dataDir string) (users, products, orders string) {
	return filepath.Join(dataDir, "users.db"), filepath.Join(dataDir, "products.db"), filepath.Join(dataDir, "orders.db")
}
