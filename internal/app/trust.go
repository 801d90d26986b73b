package app

import (
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection/grpc_reflection_v1"

	ordersv1 "github.com/kgrpc/platform/gen/shop/orders/v1"
	productsv1 "github.com/kgrpc/platform/gen/shop/products/v1"
	usersv1 "github.com/kgrpc/platform/gen/shop/users/v1"
	"github.com/kgrpc/platform/kafkatransport/trust"
)

// The shop's units, as their keys and the Policy name them.
const (
	UnitGateway  = "gateway"
	UnitUsers    = "usersvc"
	UnitProducts = "productsvc"
	UnitOrders   = "ordersvc"
)

// Units are the shop's units.
var Units = []string{UnitGateway, UnitUsers, UnitProducts, UnitOrders}

// Policy is the shop's trust policy: each service's package belongs to its
// unit, which alone serves it and produces its events; every service unit
// serves the health and reflection services for itself
// (kafkatransport.HealthSpec, ReflectionSpec); the gateway may call every
// method of the three services and their health and reflection services
// (cmd/kgrpc calls as the gateway), and the order service only the two
// methods that reserve and release stock.
func Policy() trust.Policy {
	return trust.Policy{
		Owners: map[string]string{"shop.users.v1": UnitUsers, "shop.products.v1": UnitProducts, "shop.orders.v1": UnitOrders},
		Calls: map[string][]string{
			UnitGateway: {
				"/" + usersv1.UserService_ServiceDesc.ServiceName + "/*",
				"/" + productsv1.ProductService_ServiceDesc.ServiceName + "/*",
				"/" + ordersv1.OrderService_ServiceDesc.ServiceName + "/*",
				"/" + grpc_health_v1.Health_ServiceDesc.ServiceName + "/*",
				"/" + grpc_reflection_v1.ServerReflection_ServiceDesc.ServiceName + "/*",
			},
			UnitOrders: {productsv1.ProductService_ReserveStock_FullMethodName, productsv1.ProductService_ReleaseStock_FullMethodName},
		},
		PerUnit: []string{grpc_health_v1.Health_ServiceDesc.ServiceName, grpc_reflection_v1.ServerReflection_ServiceDesc.ServiceName},
	}
}

// Trust is the keys a process holds: the keyring of every unit's public
// keys and the private keys of the units it runs.
type Trust struct {
	Ring *trust.Keyring
	Keys map[string]*trust.UnitKey // by unit
}

// guard returns the Guard of unit.
func (t Trust) guard(unit string) (*trust.Guard, error) {
	k, ok := t.Keys[unit]
	if !ok {
		return nil, fmt.Errorf("no key for unit %s", unit)
	}
	return trust.NewGuard(k, t.Ring, Policy())
}

// LoadTrust reads a split binary's key files: its unit key (which must be
// unit's) and the keyring.
func LoadTrust(unit, unitKey, keyring string) (Trust, error) {
	k, err := trust.LoadUnitKey(unitKey)
	if err != nil {
		return Trust{}, err
	}
	if k.Unit != unit {
		return Trust{}, fmt.Errorf("%s holds the key of unit %s, not of %s", unitKey, k.Unit, unit)
	}
	ring, err := trust.LoadKeyring(keyring)
	if err != nil {
		return Trust{}, err
	}
	return Trust{Ring: ring, Keys: map[string]*trust.UnitKey{unit: k}}, nil
}

// KeyringFile is the keyring's file name in a key directory; each unit's
// key is "<unit>.key" beside it (trust.UnitKeyPath).
const KeyringFile = trust.KeyringFile

// EnsureKeys returns the keys of every unit kept in dir, making the keys
// that are missing (and the keyring, which it keeps in step with the unit
// keys): cmd/platform keeps its keys so. cmd/kgrpc-keys makes them the same
// way (trust.EnsureDir) for split deployments.
func EnsureKeys(dir string, logger *slog.Logger) (Trust, error) {
	ring, keys, err := trust.EnsureDir(dir, Units, time.Now(), func(unit string, k trust.Key, path string) {
		logger.Info("made a unit key", "unit", unit, "kid", k.ID, "file", path)
	})
	if err != nil {
		return Trust{}, err
	}
	return Trust{Ring: ring, Keys: keys}, nil
}
