package agent

import (
	"context"
	"errors"
	"os"
	"time"
)

// sendLoop drains the outbox in order over whichever connection is up.
func (a *Agent) sendLoop(ctx context.Context) {
	for {
		var c *conn
		for c = a.current(); c == nil; c = a.current() {
			select {
			case <-ctx.Done():
				return
			case <-a.connSig:
			}
		}
		a.sendOn(ctx, c)
		if ctx.Err() != nil {
			return
		}
	}
}

// sendOn hands up to InflightWindow messages to c at once; each is removed
// from disk only when its PUBACK arrives. When c is lost, whatever was not
// acknowledged is sent again, in order, on the next connection.
func (a *Agent) sendOn(ctx context.Context, c *conn) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Messages become visible in sequence order, so everything above last
	// is yet to be sent on c.
	var last uint64
	inflight := 0
	acked := make(chan uint64)
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		blocked := false
	fill:
		for inflight < a.cfg.InflightWindow {
			es := a.ob.PendingAfter(last, a.cfg.InflightWindow-inflight)
			if len(es) == 0 {
				break
			}
			for _, e := range es {
				msg, err := a.ob.Read(e.Seq)
				if errors.Is(err, os.ErrNotExist) {
					last = e.Seq
					continue // dropped to make room meanwhile
				}
				if err != nil {
					a.log.Error("outbox read", "seq", e.Seq, "err", err)
					blocked = true
					break fill
				}
				ack, err := a.publishAck(c, msg.Topic, false, msg.Payload)
				if err != nil {
					// Keep order: nothing after it goes out before it.
					a.log.Debug("outbox publish deferred", "seq", e.Seq, "err", err)
					blocked = true
					break fill
				}
				last = e.Seq
				inflight++
				go func(seq uint64) {
					select {
					case <-ack:
					case <-ctx.Done():
						return
					}
					select {
					case acked <- seq:
					case <-ctx.Done():
					}
				}(e.Seq)
			}
		}
		if blocked {
			retry.Reset(time.Second)
		}
		select {
		case <-ctx.Done():
			return
		case <-c.lost:
			return
		case seq := <-acked:
			inflight--
			if err := a.ob.Remove(seq); err != nil {
				a.log.Error("outbox remove", "seq", seq, "err", err)
			}
			select {
			case a.ackedSig <- struct{}{}:
			default:
			}
		case <-a.ob.Notify():
		case <-retry.C:
		}
	}
}
