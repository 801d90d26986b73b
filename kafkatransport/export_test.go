package kafkatransport

// SilenceForTest makes c stop sending heartbeats on its streams, as a
// client process that died would, without telling their servers.
func SilenceForTest(c *ClientConn) { c.silenced.Store(true) }

// InboxPartitionForTest returns the partition of the reply topic where s
// reads its streams' frames (-1 before Serve set it up).
func InboxPartitionForTest(s *Server) int32 {
	if s.streams == nil {
		return -1
	}
	return s.streams.inboxPartition
}

// FailProducesForTest makes the next n requests of c fail as the producer
// refusing them would (a full queue): they never reach the broker.
func FailProducesForTest(c *ClientConn, n int32) { c.failProduces.Store(n) }
