package agent

import (
	"context"
	"errors"
	"os"
	"strings"
	"time"

	"github.com/absmach/propeller/proplet/outbox"
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
	acked := make(chan outbox.Entry)
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
				go func(e outbox.Entry) {
					select {
					case <-ack:
					case <-ctx.Done():
						return
					}
					select {
					case acked <- e:
					case <-ctx.Done():
					}
				}(e)
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
		case e := <-acked:
			inflight--
			if err := a.ob.Remove(e.Seq); err != nil {
				a.log.Error("outbox remove", "seq", e.Seq, "err", err)
			}
			if e.Terminal {
				a.log.Debug("report acknowledged by the broker", "key", strings.ReplaceAll(e.Key, "\x00", "/"))
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
