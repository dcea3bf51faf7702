package bolt

import (
	"encoding/binary"
	"fmt"

	bbolt "go.etcd.io/bbolt"
)

// schemaLayout is the file layout this build writes and how to reach it
// from older ones.
type schemaLayout struct {
	// version is stored under meta/schema as a big-endian uint64.
	version uint64
	// migrations[v] rewrites a schema-v file into schema v+1. They run in
	// order, in the transaction that opens the file, so an upgrade is all
	// done or not at all (a crash mid-way leaves the old version).
	migrations map[uint64]func(*bbolt.Tx) error
}

// schema is the current layout. Version 1 is the first; a change of the
// record encoding or the index keys bumps it and adds a migration.
var schema = schemaLayout{version: 1, migrations: map[uint64]func(*bbolt.Tx) error{}}

// migrate stamps a new file with l.version, upgrades an older one through
// l.migrations, and refuses a newer one with ErrNewerSchema.
func migrate(tx *bbolt.Tx, l schemaLayout) error {
	meta := tx.Bucket(bucketMeta)
	v := meta.Get(keySchema)
	if v == nil {
		return putSchema(meta, l.version)
	}
	if len(v) != 8 {
		return fmt.Errorf("schema marker of %d bytes (want 8): not a propeller database, or a damaged one", len(v))
	}
	have := binary.BigEndian.Uint64(v)
	if have > l.version {
		return fmt.Errorf("%w: its schema is %d, this propeller reads schema %d at most; run the newer propeller, or restore a backup made by this one", ErrNewerSchema, have, l.version)
	}
	for ; have < l.version; have++ {
		m, ok := l.migrations[have]
		if !ok {
			return fmt.Errorf("no migration from schema %d to %d", have, have+1)
		}
		if err := m(tx); err != nil {
			return fmt.Errorf("migrate schema %d to %d: %w", have, have+1, err)
		}
	}
	return putSchema(meta, have)
}

func putSchema(meta *bbolt.Bucket, v uint64) error {
	return meta.Put(keySchema, binary.BigEndian.AppendUint64(nil, v))
}
