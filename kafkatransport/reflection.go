package kafkatransport

import (
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/reflection/grpc_reflection_v1"
)

// ReflectionSpec returns the spec of the standard gRPC server reflection
// service, grpc.reflection.v1.ServerReflection, as the unit named unit
// serves it: on a request topic of its own,
// "grpc.reflection.v1.ServerReflection.<unit>" (before any TopicPrefix),
// as HealthSpec places the health service, so that each unit describes its
// own services. A tool finds the units of a cluster from the topics whose
// names start with ReflectionTopicPrefix, then calls
//
//	grpc_reflection_v1.NewServerReflectionClient(conn.Service(kafkatransport.ReflectionSpec(unit)))
func ReflectionSpec(unit string) ServiceSpec {
	return ServiceSpec{Name: reflectionService, Topic: ReflectionTopicPrefix + unit}
}

// reflectionService is the reflection service's full name.
var reflectionService = grpc_reflection_v1.ServerReflection_ServiceDesc.ServiceName

// ReflectionTopicPrefix begins the name of every unit's reflection topic
// (ReflectionSpec), before any TopicPrefix.
var ReflectionTopicPrefix = reflectionService + "."

// RegisterReflection registers the standard server reflection service
// (google.golang.org/grpc/reflection, version v1) on s for the unit named
// unit, on the topic ReflectionSpec(unit) names. It describes the services
// registered on s, from the protobuf files linked into the program. Call
// it before Serve, after the other services are registered or not: it
// lists what s holds when asked.
func RegisterReflection(s *Server, unit string) {
	grpc_reflection_v1.RegisterServerReflectionServer(s, reflection.NewServerV1(reflection.ServerOptions{Services: s}))
	s.Describe(ReflectionSpec(unit))
}
