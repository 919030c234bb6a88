"""On PostgreSQL, `activity_span` becomes a table partitioned by range on `start`, one partition
per UTC day (see `activity.retention`), so retention drops whole days instead of deleting rows.
Existing rows are copied into their days' partitions.

No primary-key constraint: on a partitioned table it would have to be (id, start), and spans
are never looked up or updated by id, so its index would only cost one more btree insert per
span on the ingest path. Django still treats `id` as the primary key; ids stay unique because
one sequence issues them. PostgreSQL 15 has no identity columns on partitioned tables, so `id`
takes its default from a sequence owned by the column, which hands each connection 1,000 ids
at a time so concurrent uploads do not queue on it.

On SQLite (no partitions) retention deletes by `start`, which gets an index of its own here.
"""

import datetime

from django.db import migrations

SPAN = "activity_span"


def partition(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS span_start ON {SPAN} (start)")
        return
    if schema_editor.connection.vendor != "postgresql":
        return
    run = schema_editor.execute
    old = f"{SPAN}_unpartitioned"
    run(f"ALTER TABLE {SPAN} RENAME TO {old}")
    # Index names are per schema: move the old ones aside so the new table can take them.
    for index in ("activity_span_pkey", "activity_span_batch_id_fa95e696", "span_person_start", "span_start_brin"):
        run(f"ALTER INDEX IF EXISTS {index} RENAME TO {index}_old")
    run(f"CREATE SEQUENCE {SPAN}_id_seq_new CACHE 1000")
    run(f"CREATE TABLE {SPAN} (LIKE {old} INCLUDING DEFAULTS) PARTITION BY RANGE (start)")
    run(f"ALTER TABLE {SPAN} ALTER COLUMN id SET DEFAULT nextval('{SPAN}_id_seq_new')")
    run(f"CREATE INDEX activity_span_batch_id_fa95e696 ON {SPAN} (batch_id)")
    run(f"CREATE INDEX span_person_start ON {SPAN} (person_id, start)")
    run(f"CREATE INDEX span_start_brin ON {SPAN} USING brin (start)")
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"SELECT DISTINCT (start AT TIME ZONE 'UTC')::date FROM {old}")  # noqa: S608
        days = [row[0] for row in cursor.fetchall()]
        for day in days:
            # The same names and bounds as activity.retention.ensure_partitions.
            upto = day + datetime.timedelta(days=1)
            cursor.execute(
                f"CREATE TABLE {SPAN}_p{day:%Y%m%d} PARTITION OF {SPAN} "
                f"FOR VALUES FROM ('{day:%Y-%m-%d} 00:00+00') TO ('{upto:%Y-%m-%d} 00:00+00')"
            )
    run(f"INSERT INTO {SPAN} SELECT * FROM {old}")  # noqa: S608
    run(f"SELECT setval('{SPAN}_id_seq_new', COALESCE((SELECT max(id) FROM {SPAN}), 0) + 1, false)")  # noqa: S608
    run(f"DROP TABLE {old}")
    run(f"ALTER SEQUENCE {SPAN}_id_seq_new RENAME TO {SPAN}_id_seq")
    run(f"ALTER TABLE {SPAN} ALTER COLUMN id SET DEFAULT nextval('{SPAN}_id_seq')")
    run(f"ALTER SEQUENCE {SPAN}_id_seq OWNED BY {SPAN}.id")


class Migration(migrations.Migration):
    dependencies = [("activity", "0005_usage_rollups")]

    # Not reversed: the partitioned table serves the earlier code unchanged.
    operations = [migrations.RunPython(partition, migrations.RunPython.noop)]
