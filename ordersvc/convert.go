package ordersvc

import (
	"google.golang.org/protobuf/types/known/timestamppb"

	ordersv1 "github.com/kgrpc/platform/gen/shop/orders/v1"
)

// This file converts between the stored orders and their messages.

// statusToProto maps every stored status to its message value.
var statusToProto = map[Status]ordersv1.OrderStatus{
	StatusPending:   ordersv1.OrderStatus_ORDER_STATUS_PENDING,
	StatusConfirmed: ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED,
	StatusShipped:   ordersv1.OrderStatus_ORDER_STATUS_SHIPPED,
	StatusDelivered: ordersv1.OrderStatus_ORDER_STATUS_DELIVERED,
	StatusCancelled: ordersv1.OrderStatus_ORDER_STATUS_CANCELLED,
}

// toProtoStatus returns the message value of s.
func toProtoStatus(s Status) ordersv1.OrderStatus { return statusToProto[s] }

// fromProtoStatus maps a request's status; UNSPECIFIED and unknown values
// are not valid.
func fromProtoStatus(p ordersv1.OrderStatus) (Status, bool) {
	for s, v := range statusToProto {
		if v == p {
			return s, true
		}
	}
	return "", false
}

// toProtoItems converts an order's lines to their messages.
func toProtoItems(items []Item) []*ordersv1.OrderItem {
	out := make([]*ordersv1.OrderItem, len(items))
	for i, it := range items {
		out[i] = &ordersv1.OrderItem{
			ProductId:      it.ProductID,
			ProductName:    it.ProductName,
			UnitPriceCents: it.UnitPriceCents,
			Quantity:       it.Quantity,
		}
	}
	return out
}

// toProto converts o to its message.
func toProto(o Order) *ordersv1.Order {
	return &ordersv1.Order{
		Id:         o.ID,
		UserId:     o.UserID,
		Items:      toProtoItems(o.Items),
		TotalCents: o.TotalCents,
		Status:     toProtoStatus(o.Status),
		CreateTime: timestamppb.New(o.CreateTime),
		UpdateTime: timestamppb.New(o.UpdateTime),
	}
}
