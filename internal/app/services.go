package app

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"golang.org/x/sync/errgroup"

	ordersv1 "github.com/kgrpc/platform/gen/shop/orders/v1"
	productsv1 "github.com/kgrpc/platform/gen/shop/products/v1"
	usersv1 "github.com/kgrpc/platform/gen/shop/users/v1"
	"github.com/kgrpc/platform/internal/outbox"
	"github.com/kgrpc/platform/kafkatransport"
	"github.com/kgrpc/platform/ordersvc"
	"github.com/kgrpc/platform/productsvc"
	"github.com/kgrpc/platform/usersvc"
)

// AdminSeed names an admin account to create (or promote) at start. Empty
// Email means none.
type AdminSeed struct {
	Email, Password, DisplayName string
}

// UsersConfig configures the users service unit.
type UsersConfig struct {
	// DB is the database: a SQLite file path or a postgres:// URL.
	DB string
	// Admin is seeded at start when set.
	Admin AdminSeed
	// Ready, when not nil, is set once the service consumes requests.
	Ready *Ready
}

// RunUsers serves the users service until ctx ends.
func RunUsers(ctx context.Context, c Common, cfg UsersConfig) error {
	log := c.Logger.With("unit", "usersvc")
	repo, err := usersvc.Open(ctx, cfg.DB)
	if err != nil {
		return err
	}
	defer repo.Close()
	pub, err := kafkatransport.NewPublisher(c.Brokers, c.kafkaOptions(log), c.topicOptions())
	if err != nil {
		return err
	}
	defer pub.Close(context.WithoutCancel(ctx))
	relay := outbox.NewRelay(repo.DB(), outbox.PublishTo(pub), log)
	svc, err := usersvc.New(usersvc.Config{Repo: repo, Signer: c.Signer, Logger: log, Notify: relay.Notify})
	if err != nil {
		return err
	}
	if cfg.Admin.Email != "" {
		name := cfg.Admin.DisplayName
		if name == "" {
			name = "Admin"
		}
		if err := svc.EnsureAdmin(ctx, cfg.Admin.Email, cfg.Admin.Password, name); err != nil {
			return fmt.Errorf("seed admin %s: %w", cfg.Admin.Email, err)
		}
		log.Info("admin account ready", "email", cfg.Admin.Email)
	}
	srv, err := c.newServer(log)
	if err != nil {
		return err
	}
	usersv1.RegisterUserServiceKafkaServer(srv, svc)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Serve(gctx) })
	g.Go(func() error { return relay.Run(gctx) })
	g.Go(func() error { return cfg.Ready.follow(gctx, srv.Ready()) })
	return ignoreCanceled(g.Wait())
}

// ProductsConfig configures the products service unit.
type ProductsConfig struct {
	// DB is the database: a SQLite file path or a postgres:// URL.
	DB string
	// SeedDemo loads the demo catalog when the catalog is empty.
	SeedDemo bool
	// Ready, when not nil, is set once the service consumes requests.
	Ready *Ready
}

// RunProducts serves the products service, and releases the stock of
// cancelled orders from their OrderStatusChanged events, until ctx ends.
func RunProducts(ctx context.Context, c Common, cfg ProductsConfig) error {
	log := c.Logger.With("unit", "productsvc")
	repo, err := productsvc.Open(ctx, cfg.DB)
	if err != nil {
		return err
	}
	defer repo.Close()
	pub, err := kafkatransport.NewPublisher(c.Brokers, c.kafkaOptions(log), c.topicOptions())
	if err != nil {
		return err
	}
	defer pub.Close(context.WithoutCancel(ctx))
	relay := outbox.NewRelay(repo.DB(), outbox.PublishTo(pub), log)
	svc, err := productsvc.New(productsvc.Config{Repo: repo, Logger: log, Notify: relay.Notify})
	if err != nil {
		return err
	}
	if cfg.SeedDemo {
		seeded, err := svc.SeedDemoCatalog(ctx)
		if err != nil {
			return fmt.Errorf("seed demo catalog: %w", err)
		}
		if seeded {
			log.Info("demo catalog loaded")
		}
	}
	srv, err := c.newServer(log)
	if err != nil {
		return err
	}
	productsv1.RegisterProductServiceKafkaServer(srv, svc)
	sub, err := kafkatransport.NewSubscriber(c.Brokers, "shop.products.v1.ProductService.events", c.kafkaOptions(log), c.topicOptions())
	if err != nil {
		return err
	}
	ordersv1.SubscribeOrderStatusChanged(sub, svc.HandleOrderStatusChanged)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Serve(gctx) })
	g.Go(func() error { return relay.Run(gctx) })
	g.Go(func() error { return sub.Run(gctx) })
	g.Go(func() error { return cfg.Ready.follow(gctx, srv.Ready()) })
	return ignoreCanceled(g.Wait())
}

// OrdersConfig configures the orders service unit.
type OrdersConfig struct {
	// DB is the database: a SQLite file path or a postgres:// URL.
	DB string
	// RecoverAfter is ordersvc.Config.RecoverAfter: how long after an order
	// attempt began its stock is released when it stored no order. Zero
	// means ordersvc.DefaultRecoverAfter.
	RecoverAfter time.Duration
	// Ready, when not nil, is set once the service consumes requests.
	Ready *Ready
}

// RunOrders serves the orders service until ctx ends. It calls the products
// service over Kafka to reserve stock.
func RunOrders(ctx context.Context, c Common, cfg OrdersConfig) error {
	log := c.Logger.With("unit", "ordersvc")
	if cfg.RecoverAfter < 0 || (cfg.RecoverAfter != 0 && cfg.RecoverAfter <= ordersvc.DefaultCallTimeout) {
		// Checked before connecting, so a bad flag fails at once.
		return fmt.Errorf("--recover-after %v must exceed the %v call timeout to the product service", cfg.RecoverAfter, ordersvc.DefaultCallTimeout)
	}
	repo, err := ordersvc.Open(ctx, cfg.DB)
	if err != nil {
		return err
	}
	defer repo.Close()
	pub, err := kafkatransport.NewPublisher(c.Brokers, c.kafkaOptions(log), c.topicOptions())
	if err != nil {
		return err
	}
	defer pub.Close(context.WithoutCancel(ctx))
	conn, err := kafkatransport.Dial(ctx, c.Brokers, c.clientOptions(log)...)
	if err != nil {
		return err
	}
	defer conn.Close()
	products, err := ordersvc.NewProductsClient(conn.Service(productsv1.ProductServiceKafkaSpec), c.Signer)
	if err != nil {
		return err
	}
	relay := outbox.NewRelay(repo.DB(), outbox.PublishTo(pub), log)
	svc, err := ordersvc.New(ordersvc.Config{
		Repo:     repo,
		Products: products,
		Logger:   log,
		Notify:   relay.Notify,

		RecoverAfter: cfg.RecoverAfter,
	})
	if err != nil {
		return err
	}
	srv, err := c.newServer(log)
	if err != nil {
		return err
	}
	ordersv1.RegisterOrderServiceKafkaServer(srv, svc)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Serve(gctx) })
	g.Go(func() error { return relay.Run(gctx) })
	g.Go(func() error { return svc.RecoverReservations(gctx) })
	g.Go(func() error { return cfg.Ready.follow(gctx, srv.Ready()) })
	return ignoreCanceled(g.Wait())
}

// DBPaths returns the SQLite files of the three services in dataDir.
func DBPaths(dataDir string) (users, products, orders string) {
	return filepath.Join(dataDir, "users.db"), filepath.Join(dataDir, "products.db"), filepath.Join(dataDir, "orders.db")
}
