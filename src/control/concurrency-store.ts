import type Database from 'better-sqlite3';
import { statementCache, type Db } from './db.js';

export interface ProvisionedConfigRecord {
  readonly functionName: string;
  /** A published version number or an alias name. */
  readonly qualifier: string;
  readonly requested: number;
  readonly lastModified: number;
}

interface ProvisionedRow { function_name: string; qualifier: string; requested: number; last_modified: number }

const toConfig = (r: ProvisionedRow): ProvisionedConfigRecord => Object.freeze({
  functionName: r.function_name,
  qualifier: r.qualifier,
  requested: r.requested,
  lastModified: r.last_modified,
});

/**
 * Reserved concurrency per function and provisioned concurrency configurations per version or alias, in
 * SQLite. Rows go with their function (ON DELETE CASCADE). Validation is the caller's: this only stores.
 */
export class ConcurrencyStore {
  private readonly sql: (text: string) => Database.Statement;

  constructor(private readonly db: Db) {
    this.sql = statementCache(db);
  }

  /** Every function's reserved concurrency, by function name. */
  allReserved(): Map<string, number> {
    const rows = this.sql('SELECT function_name, reserved FROM function_concurrency').all() as { function_name: string; reserved: number }[];
    return new Map(rows.map((r) => [r.function_name, r.reserved]));
  }

  setReserved(functionName: string, reserved: number): void {
    this.sql('INSERT INTO function_concurrency (function_name, reserved) VALUES (?, ?) ON CONFLICT (function_name) DO UPDATE SET reserved = excluded.reserved')
      .run(functionName, reserved);
  }

  deleteReserved(functionName: string): void {
    this.sql('DELETE FROM function_concurrency WHERE function_name = ?').run(functionName);
  }

  allProvisioned(): ProvisionedConfigRecord[] {
    return (this.sql('SELECT * FROM provisioned_concurrency ORDER BY function_name, qualifier').all() as ProvisionedRow[]).map(toConfig);
  }

  getProvisioned(functionName: string, qualifier: string): ProvisionedConfigRecord | undefined {
    const r = this.sql('SELECT * FROM provisioned_concurrency WHERE function_name = ? AND qualifier = ?').get(functionName, qualifier) as ProvisionedRow | undefined;
    return r === undefined ? undefined : toConfig(r);
  }

  putProvisioned(functionName: string, qualifier: string, requested: number, now: number): ProvisionedConfigRecord {
    this.sql(`INSERT INTO provisioned_concurrency (function_name, qualifier, requested, last_modified) VALUES (?, ?, ?, ?)
      ON CONFLICT (function_name, qualifier) DO UPDATE SET requested = excluded.requested, last_modified = excluded.last_modified`)
      .run(functionName, qualifier, requested, now);
    return this.getProvisioned(functionName, qualifier) as ProvisionedConfigRecord;
  }

  deleteProvisioned(functionName: string, qualifier: string): boolean {
    return this.sql('DELETE FROM provisioned_concurrency WHERE function_name = ? AND qualifier = ?').run(functionName, qualifier).changes > 0;
  }
}
