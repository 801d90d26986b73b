package app

import (
	"strings"
	"testing"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/kgrpc/platform/gateway"
	"github.com/kgrpc/platform/productsvc"

	// The shop's protos, registered.
	_ "github.com/kgrpc/platform/gen/shop/api/v1"
	_ "github.com/kgrpc/platform/gen/shop/orders/v1"
	_ "github.com/kgrpc/platform/gen/shop/products/v1"
	_ "github.com/kgrpc/platform/gen/shop/users/v1"
)

// TestRulesKnownToRuntime: every buf.validate rule of the shop's protos is
// one the validator knows and compiles. The protos are compiled against
// third_party/protovalidate's validate.proto and run against the copy
// compiled into buf.build/go/protovalidate; a rule the runtime's copy
// lacked would be an unknown field of the options, and not enforced.
func TestRulesKnownToRuntime(t *testing.T) {
	var withRules []protoreflect.MessageDescriptor
	rules := 0
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		if !strings.HasPrefix(string(fd.Package()), "shop.") {
			return true
		}
		for i := range fd.Messages().Len() {
			md := fd.Messages().Get(i)
			found := false
			if r, ok := proto.GetExtension(md.Options(), validate.E_Message).(*validate.MessageRules); ok && r != nil {
				found = true
				noUnknown(t, string(md.FullName()), r.ProtoReflect())
			}
			for j := range md.Fields().Len() {
				fd := md.Fields().Get(j)
				if r, ok := proto.GetExtension(fd.Options(), validate.E_Field).(*validate.FieldRules); ok && r != nil {
					found = true
					rules++
					noUnknown(t, string(fd.FullName()), r.ProtoReflect())
				}
			}
			if found {
				withRules = append(withRules, md)
			}
		}
		return true
	})
	if len(withRules) < 20 || rules < 50 {
		t.Fatalf("%d messages with %d field rules: the shop's protos have more", len(withRules), rules)
	}
	if _, err := protovalidate.New(protovalidate.WithMessageDescriptors(withRules...), protovalidate.WithDisableLazy()); err != nil {
		t.Fatalf("the rules do not compile: %v", err)
	}
	t.Logf("%d messages, %d field rules", len(withRules), rules)
}

// noUnknown fails the test when m, or a message set in it, has unknown
// fields.
func noUnknown(t *testing.T, where string, m protoreflect.Message) {
	t.Helper()
	if len(m.GetUnknown()) > 0 {
		t.Errorf("%s: rules the runtime does not know (%d bytes of unknown fields in %s)", where, len(m.GetUnknown()), m.Descriptor().FullName())
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			for i := range v.List().Len() {
				noUnknown(t, where, v.List().Get(i).Message())
			}
		case fd.Message() != nil && !fd.IsMap():
			noUnknown(t, where, v.Message())
		}
		return true
	})
}

// The gateway refuses an import longer than productsvc takes before
// sending any of it, so the two limits must be one.
func TestImportLimitsAgree(t *testing.T) {
	if gateway.MaxImportLines != productsvc.MaxImportItems {
		t.Errorf("gateway.MaxImportLines %d, productsvc.MaxImportItems %d: want them equal", gateway.MaxImportLines, productsvc.MaxImportItems)
	}
}
