import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

export type Db = Database.Database;

/**
 * Versioned migrations. Append only: a released migration is never edited; the schema version lives in
 * SQLite's user_version so that an older data directory is brought forward on start.
 */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE functions (
    name          TEXT PRIMARY KEY,
    created_at    INTEGER NOT NULL,
    next_version  INTEGER NOT NULL DEFAULT 1,
    tags          TEXT NOT NULL DEFAULT '{}'
  ) STRICT;
  CREATE TABLE versions (
    function_name TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
    version       TEXT NOT NULL,
    config        TEXT NOT NULL,
    code_sha256   TEXT NOT NULL,
    code_size     INTEGER NOT NULL,
    state         TEXT NOT NULL,
    state_reason  TEXT,
    state_reason_code TEXT,
    last_update_status TEXT NOT NULL,
    last_update_reason TEXT,
    last_update_reason_code TEXT,
    revision_id   TEXT NOT NULL,
    last_modified INTEGER NOT NULL,
    PRIMARY KEY (function_name, version)
  ) STRICT;
  CREATE TABLE aliases (
    function_name TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    function_version TEXT NOT NULL,
    description   TEXT NOT NULL DEFAULT '',
    routing       TEXT,
    revision_id   TEXT NOT NULL,
    PRIMARY KEY (function_name, name)
  ) STRICT;
  CREATE TABLE function_urls (
    function_name TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
    qualifier     TEXT NOT NULL,
    url_id        TEXT NOT NULL UNIQUE,
    auth_type     TEXT NOT NULL,
    cors          TEXT,
    invoke_mode   TEXT NOT NULL DEFAULT 'BUFFERED',
    created_at    INTEGER NOT NULL,
    last_modified INTEGER NOT NULL,
    PRIMARY KEY (function_name, qualifier)
  ) STRICT;
  CREATE TABLE code (
    sha256        TEXT PRIMARY KEY,
    size          INTEGER NOT NULL,
    created_at    INTEGER NOT NULL
  ) STRICT;
  CREATE TABLE logs (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    function_name TEXT NOT NULL,
    version       TEXT NOT NULL,
    request_id    TEXT,
    ts            INTEGER NOT NULL,
    message       TEXT NOT NULL
  ) STRICT;
  CREATE INDEX logs_by_function ON logs(function_name, seq);
  CREATE TABLE settings (
    key           TEXT PRIMARY KEY,
    value         TEXT NOT NULL
  ) STRICT;
  `,
  `
  CREATE TABLE function_concurrency (
    function_name TEXT PRIMARY KEY REFERENCES functions(name) ON DELETE CASCADE,
    reserved      INTEGER NOT NULL
  ) STRICT;
  CREATE TABLE provisioned_concurrency (
    function_name TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
    qualifier     TEXT NOT NULL,
    requested     INTEGER NOT NULL,
    last_modified INTEGER NOT NULL,
    PRIMARY KEY (function_name, qualifier)
  ) STRICT;
  `,
  `
  CREATE TABLE async_events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id    TEXT NOT NULL UNIQUE,
    function_name TEXT NOT NULL,
    qualifier     TEXT,
    payload       BLOB NOT NULL,
    client_context TEXT,
    enqueued_at   INTEGER NOT NULL,
    not_before    INTEGER NOT NULL,
    invokes       INTEGER NOT NULL DEFAULT 0,
    failures      INTEGER NOT NULL DEFAULT 0,
    throttles     INTEGER NOT NULL DEFAULT 0,
    last_result   TEXT,
    lease         TEXT
  ) STRICT;
  CREATE INDEX async_events_due ON async_events(not_before, id);
  CREATE TABLE event_invoke_configs (
    function_name TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
    qualifier     TEXT NOT NULL,
    max_retry_attempts INTEGER,
    max_event_age_sec  INTEGER,
    on_success    TEXT,
    on_failure    TEXT,
    last_modified INTEGER NOT NULL,
    PRIMARY KEY (function_name, qualifier)
  ) STRICT;
  ALTER TABLE logs ADD COLUMN attempt INTEGER;
  `,
  // Lambda layers. A deleted version keeps its row (deleted_at set): functions that use it keep working, and
  // its number is never given out again (next_version lives on the layer).
  `
  CREATE TABLE layers (
    name          TEXT PRIMARY KEY,
    next_version  INTEGER NOT NULL DEFAULT 1,
    created_at    INTEGER NOT NULL
  ) STRICT;
  CREATE TABLE layer_versions (
    layer_name    TEXT NOT NULL REFERENCES layers(name),
    version       INTEGER NOT NULL,
    description   TEXT NOT NULL DEFAULT '',
    license_info  TEXT,
    compatible_runtimes TEXT NOT NULL DEFAULT '[]',
    compatible_architectures TEXT NOT NULL DEFAULT '[]',
    code_sha256   TEXT NOT NULL,
    code_size     INTEGER NOT NULL,
    unzipped_size INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    deleted_at    INTEGER,
    PRIMARY KEY (layer_name, version)
  ) STRICT;
  `,
  `
  CREATE TABLE store_artifacts (
    name          TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    manifest      TEXT NOT NULL,
    logical_bytes INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER NOT NULL
  ) STRICT;
  CREATE INDEX store_artifacts_by_kind ON store_artifacts(kind, last_used_at);
  CREATE TABLE store_traces (
    name          TEXT PRIMARY KEY,
    chunks        TEXT NOT NULL,
    created_at    INTEGER NOT NULL
  ) STRICT;
  `,
  // How far along its chain of destination and dead-letter deliveries an asynchronous event is (loop detection).
  `
  ALTER TABLE async_events ADD COLUMN hops INTEGER NOT NULL DEFAULT 0;
  `,
];

/**
 * Prepared statements by their SQL text, each prepared once: on the invoke path (version resolution, queue
 * claims) preparing costs more than running.
 */
export function statementCache(db: Db): (text: string) => Database.Statement {
  const statements = new Map<string, Database.Statement>();
  return (text) => {
    let st = statements.get(text);
    if (st === undefined) statements.set(text, (st = db.prepare(text)));
    return st;
  };
}

export function openDb(file: string): Db {
  mkdirSync(dirname(file), { recursive: true });
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  migrate(db);
  return db;
}

export function migrate(db: Db): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > MIGRATIONS.length) {
    throw new Error(`data directory schema version ${current} is newer than this Thaw (${MIGRATIONS.length})`);
  }
  for (let v = current; v < MIGRATIONS.length; v++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v] as string);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
}

export const schemaVersion = (): number => MIGRATIONS.length;
