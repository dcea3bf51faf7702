package bolt

import (
	"fmt"
	"io"

	bbolt "go.etcd.io/bbolt"
)

// Backup writes a consistent copy of the whole database to w while the
// store keeps serving: it is one read transaction, so writers go on and
// the copy is the state at its start. The copy is a bbolt file that Open
// accepts as it is. It returns the bytes written.
func (s *Store) Backup(w io.Writer) (int64, error) {
	var n int64
	err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("bolt: backup: %w", err)
	}
	return n, nil
}
