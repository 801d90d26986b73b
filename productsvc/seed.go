package productsvc

import (
	"context"
	"time"

	"github.com/kgrpc/platform/internal/sqlstore"
)

// demoProduct is one entry of the demo catalogue.
type demoProduct struct {
	sku, name, description, category string
	priceCents, stock                int64
}

// demoCatalog is what SeedDemoCatalog loads: ten products in three
// categories, one of them out of stock.
var demoCatalog = []demoProduct{
	{"BOOK-GOPL", "The Go Programming Language", "Donovan and Kernighan's tour of Go, from the basics to concurrency, testing and reflection.", "Books", 3999, 25},
	{"BOOK-DDIA", "Designing Data-Intensive Applications", "Martin Kleppmann on the ideas behind reliable, scalable and maintainable data systems.", "Books", 4599, 18},
	{"BOOK-KAFKA", "Kafka: The Definitive Guide", "Real-time data and stream processing at scale, second edition.", "Books", 4999, 12},
	{"BOOK-SRE", "Site Reliability Engineering", "How Google runs production systems: SLOs, toil, on-call and postmortems.", "Books", 3499, 0},
	{"ELEC-KB-87", "Mechanical Keyboard 87-Key", "Tenkeyless keyboard with hot-swappable brown switches and PBT keycaps.", "Electronics", 8900, 40},
	{"ELEC-MOUSE-W", "Wireless Ergonomic Mouse", "Vertical mouse with silent buttons, USB-C charging and two-month battery life.", "Electronics", 4900, 60},
	{"ELEC-USB-HUB", "USB-C Hub 7-in-1", "HDMI 4K, two USB-A 3.0 ports, SD and microSD readers, 100 W power delivery.", "Electronics", 3500, 75},
	{"HOME-MUG-12", "Stoneware Coffee Mug", "Hand-glazed 350 ml mug, dishwasher and microwave safe.", "Home & Kitchen", 1400, 120},
	{"HOME-KETTLE", "Gooseneck Electric Kettle", "1 litre kettle with temperature presets for green tea, pour-over and French press.", "Home & Kitchen", 6900, 15},
	{"HOME-LAMP-D", "LED Desk Lamp", "Dimmable desk lamp with adjustable colour temperature and a USB charging port.", "Home & Kitchen", 2999, 30},
}

// SeedDemoCatalog loads a small demo catalogue (ten products in the
// categories "Books", "Electronics" and "Home & Kitchen") when the store has
// never held a product, deleted ones included, and reports whether it did.
// It writes the same events as CreateProduct.
func (s *Service) SeedDemoCatalog(ctx context.Context) (bool, error) {
	now := s.now()
	ps := make([]Product, len(demoCatalog))
	for i, d := range demoCatalog {
		// Distinct create times keep the create_time order the list order.
		t := now.Add(time.Duration(i) * time.Microsecond)
		ps[i] = Product{
			ID: sqlstore.NewID("p_"), SKU: d.sku, Name: d.name, Description: d.description, Category: d.category,
			PriceCents: d.priceCents, Stock: d.stock, CreateTime: t, UpdateTime: t,
		}
	}
	seeded, err := s.repo.SeedProducts(ctx, ps, createdEvents(now))
	if err != nil {
		return false, err
	}
	if seeded {
		s.notify()
	}
	return seeded, nil
}
