package bolt

import (
	bbolt "go.etcd.io/bbolt"

	"github.com/absmach/propeller/orchestration"
)

// BulkCreate loads many tasks in few transactions, through the same
// record and index code as CreateTask, so benchmarks can set up 100k tasks
// in seconds instead of paying one commit per batch of callers.
func BulkCreate(s *Store, tasks []orchestration.Task) error {
	const chunk = 10000
	for len(tasks) > 0 {
		n := min(chunk, len(tasks))
		err := s.db.Update(func(tx *bbolt.Tx) error {
			b := tx.Bucket(bucketTasks)
			for i := range tasks[:n] {
				t := &tasks[i]
				rec, err := encodeTask(t)
				if err != nil {
					return err
				}
				if err := b.Put([]byte(t.ID), rec); err != nil {
					return err
				}
				if err := applyIndex(tx, t.ID, nil, indexPrefixes(t)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		tasks = tasks[n:]
	}
	return nil
}

// SetSchema makes this build's layout version and its migrations what a
// test says (a simulated upgrade); restore puts the real ones back.
func SetSchema(version uint64, migrations map[uint64]func(*bbolt.Tx) error) (restore func()) {
	old := schema
	schema = schemaLayout{version: version, migrations: migrations}
	return func() { schema = old }
}
