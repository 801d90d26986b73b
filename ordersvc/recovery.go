package ordersvc

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// The recovery sweep gives back the stock of order attempts that reserved
// and then died or failed without storing their order (see CreateOrder).

// recoverBatch is how many pending reservations RecoverDue reads at a time.
const recoverBatch = 100

// maxRecoverBatches bounds the batches of one RecoverDue call.
const maxRecoverBatches = 50

// RecoverReservations runs the recovery sweep (RecoverDue) every
// Config.RecoverEvery until ctx ends. Every instance runs one; they share
// the work through the repository's claims.
func (s *Service) RecoverReservations(ctx context.Context) error {
	t := time.NewTicker(s.cfg.RecoverEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if _, err := s.RecoverDue(ctx); err != nil && ctx.Err() == nil {
			s.cfg.Logger.WarnContext(ctx, "ordersvc: recovery sweep", "err", err)
		}
	}
}

// RecoverDue releases the stock of the pending reservations whose recover
// time has passed and whose order was never stored, and returns how many it
// released. It works in batches of recoverBatch until none is due, at most
// maxRecoverBatches per call, so a backlog (many failed orders at once)
// drains at the speed of the release calls. A pending reservation whose
// order exists is only forgotten. A failed release stays pending and is
// retried by a later call once its lease (twice the call timeout) ends.
func (s *Service) RecoverDue(ctx context.Context) (int, error) {
	released := 0
	var errs []error
	for range maxRecoverBatches {
		n, due, err := s.recoverOnce(ctx)
		released += n
		if err != nil {
			errs = append(errs, err)
		}
		// A short batch drained the backlog; a failing one would only fail
		// again.
		if due < recoverBatch || err != nil || ctx.Err() != nil {
			break
		}
	}
	if released > 0 {
		s.cfg.Logger.InfoContext(ctx, "ordersvc: recovery sweep released abandoned reservations", "released", released)
	}
	return released, errors.Join(errs...)
}

// recoverOnce handles up to recoverBatch due pending reservations and
// returns how many it released and how many were due.
func (s *Service) recoverOnce(ctx context.Context) (released, due int, err error) {
	now := s.now()
	ids, err := s.cfg.Repo.DueReservations(ctx, now, recoverBatch)
	if err != nil {
		return 0, 0, err
	}
	var errs []error
	for _, id := range ids {
		claim, err := s.cfg.Repo.ClaimRecovery(ctx, id, now, s.now().Add(2*s.cfg.CallTimeout))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if claim != ClaimRelease {
			continue
		}
		if err := s.release(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("release %s: %w", id, err))
			continue
		}
		if err := s.cfg.Repo.FinishRecovery(ctx, id); err != nil {
			errs = append(errs, err)
			continue
		}
		released++
		s.cfg.Logger.DebugContext(ctx, "ordersvc: released the stock of an order attempt that stored no order", "order_id", id)
	}
	return released, len(ids), errors.Join(errs...)
}
