package kafkatransport

import (
	"cmp"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health/grpc_health_v1"
)

// HealthReasonKey is the trailer metadata key in which a health server
// (grpc.health.v1.Health) says why it answers NOT_SERVING, say "database:
// ping: connection refused". The standard health client ignores it; read it
// with grpc.Trailer.
const HealthReasonKey = "kgrpc-health-reason"

// HealthSpec returns the spec of the standard health service,
// grpc.health.v1.Health, as the unit named unit serves it: on a request
// topic of its own, "grpc.health.v1.Health.<unit>" (before any
// TopicPrefix), so that every unit of a system on one cluster answers for
// itself. unit must be a valid part of a topic name without '.', as
// trust's unit names are. Servers pass it to Describe before Serve, after
// grpc_health_v1.RegisterHealthServer; clients call
//
//	grpc_health_v1.NewHealthClient(conn.Service(kafkatransport.HealthSpec("productsvc")))
//
// A program that serves one unit on a cluster may keep the default topic,
// "grpc.health.v1.Health", and use grpc_health_v1.NewHealthClient(conn).
func HealthSpec(unit string) ServiceSpec {
	name := grpc_health_v1.Health_ServiceDesc.ServiceName
	return ServiceSpec{Name: name, Topic: name + "." + unit}
}

// GetServiceInfo returns the services registered on s by name, with their
// methods, as grpc.Server.GetServiceInfo does. Metadata is the
// descriptor's Metadata (the proto file name in generated code).
func (s *Server) GetServiceInfo() map[string]grpc.ServiceInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	info := make(map[string]grpc.ServiceInfo, len(s.services))
	for name, svc := range s.services {
		var ms []grpc.MethodInfo
		for _, m := range svc.desc.Methods {
			ms = append(ms, grpc.MethodInfo{Name: m.MethodName})
		}
		for _, st := range svc.desc.Streams {
			ms = append(ms, grpc.MethodInfo{Name: st.StreamName, IsClientStream: st.ClientStreams, IsServerStream: st.ServerStreams})
		}
		slices.SortFunc(ms, func(a, b grpc.MethodInfo) int { return cmp.Compare(a.Name, b.Name) })
		info[name] = grpc.ServiceInfo{Methods: ms, Metadata: svc.desc.Metadata}
	}
	return info
}
