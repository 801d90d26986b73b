package gateway

import (
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	ordersv1 "github.com/kgrpc/platform/gen/shop/orders/v1"
)

func TestJSONFieldPath(t *testing.T) {
	order := requestDescriptor(ordersv1.OrderService_CreateOrder_FullMethodName)
	if order == nil || order.FullName() != "shop.orders.v1.CreateOrderRequest" {
		t.Fatalf("request of CreateOrder = %v", order)
	}
	st := (&structpb.Struct{}).ProtoReflect().Descriptor()
	tests := []struct {
		name, path, want string
		in               bool // of CreateOrder's request, else of a Struct
	}{
		{"repeated message", "items[0].product_id", "items[0].productId", true},
		{"top level", "items", "items", true},
		{"unknown field stays, and what follows", "nope.product_id", "nope.product_id", true},
		{"unknown in the middle", "items[1].nope.product_id", "items[1].nope.product_id", true},
		{"empty", "", "", true},
		{"map keys kept, dots in them too", `fields["a.b"].struct_value.fields["x\"]."].list_value.values[0].number_value`,
			`fields["a.b"].structValue.fields["x\"]."].listValue.values[0].numberValue`, false},
		{"map without a key", "fields.struct_value", "fields.struct_value", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			md := st
			if tt.in {
				md = order
			}
			if got := jsonFieldPath(md, tt.path); got != tt.want {
				t.Errorf("jsonFieldPath(%q) = %q, want %q", tt.path, got, tt.want)
			}
		})
	}
	if got := jsonFieldPath(nil, "items[0].product_id"); got != "items[0].product_id" {
		t.Errorf("without a message: %q", got)
	}
	if requestDescriptor("/shop.nope.v1.X/Y") != nil || requestDescriptor("nonsense") != nil {
		t.Error("a method that does not exist has a request")
	}
}

func TestJSONFieldNames(t *testing.T) {
	order := requestDescriptor(ordersv1.OrderService_CreateOrder_FullMethodName)
	st, err := status.New(codes.InvalidArgument, "invalid request: items[0].product_id: value is required; items[0].quantity: must be positive").WithDetails(
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: "items[0].product_id", Description: "value is required", Reason: "required"},
			{Field: "items[0].quantity", Description: "must be positive"},
		}})
	if err != nil {
		t.Fatal(err)
	}
	got := jsonFieldNames(st, order)
	if want := "invalid request: items[0].productId: value is required; items[0].quantity: must be positive"; got.Message() != want {
		t.Errorf("message %q, want %q", got.Message(), want)
	}
	br := got.Details()[0].(*errdetails.BadRequest)
	if f := br.GetFieldViolations()[0]; f.GetField() != "items[0].productId" || f.GetReason() != "required" {
		t.Errorf("violation %v", f)
	}
	// The original is untouched, and a message in other words kept.
	if st.Details()[0].(*errdetails.BadRequest).GetFieldViolations()[0].GetField() != "items[0].product_id" {
		t.Error("the original status changed")
	}
	other, _ := status.New(codes.InvalidArgument, "items[0].product_id is bad").WithDetails(
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "items[0].product_id"}}})
	if got := jsonFieldNames(other, order); got.Message() != "items[0].product_id is bad" ||
		got.Details()[0].(*errdetails.BadRequest).GetFieldViolations()[0].GetField() != "items[0].productId" {
		t.Errorf("other message: %v", got.Proto())
	}
}
