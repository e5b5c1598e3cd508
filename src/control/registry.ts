import { randomUUID, randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type Database from 'better-sqlite3';
import { statementCache, type Db } from './db.js';
import { ThawError } from '../util/errors.js';
import { isVersionNumber } from './arn.js';
import type {
  AliasRecord, FunctionConfig, FunctionUrlRecord, LastUpdateStatus, VersionRecord, VersionState,
} from './model.js';

interface VersionRow {
  function_name: string; version: string; config: string; code_sha256: string; code_size: number;
  state: string; state_reason: string | null; state_reason_code: string | null;
  last_update_status: string; last_update_reason: string | null; last_update_reason_code: string | null;
  revision_id: string; last_modified: number;
}
interface AliasRow {
  function_name: string; name: string; function_version: string; description: string; routing: string | null; revision_id: string;
}
interface UrlRow {
  function_name: string; qualifier: string; url_id: string; auth_type: string; cors: string | null;
  invoke_mode: string; created_at: number; last_modified: number;
}

const toVersion = (r: VersionRow): VersionRecord => Object.freeze({
  functionName: r.function_name,
  version: r.version,
  config: Object.freeze(JSON.parse(r.config) as FunctionConfig),
  codeSha256: r.code_sha256,
  codeSize: r.code_size,
  state: r.state as VersionState,
  stateReason: r.state_reason,
  stateReasonCode: r.state_reason_code,
  lastUpdateStatus: r.last_update_status as LastUpdateStatus,
  lastUpdateReason: r.last_update_reason,
  lastUpdateReasonCode: r.last_update_reason_code,
  revisionId: r.revision_id,
  lastModified: r.last_modified,
});

const toAlias = (r: AliasRow): AliasRecord => Object.freeze({
  functionName: r.function_name,
  name: r.name,
  functionVersion: r.function_version,
  description: r.description,
  weights: r.routing === null ? null : (JSON.parse(r.routing) as Record<string, number>),
  revisionId: r.revision_id,
});

const toUrl = (r: UrlRow): FunctionUrlRecord => Object.freeze({
  functionName: r.function_name,
  qualifier: r.qualifier,
  urlId: r.url_id,
  authType: r.auth_type as 'NONE' | 'AWS_IAM',
  cors: r.cors === null ? null : (JSON.parse(r.cors) as Record<string, unknown>),
  invokeMode: r.invoke_mode as 'BUFFERED' | 'RESPONSE_STREAM',
  createdAt: r.created_at,
  lastModified: r.last_modified,
});

export interface CodeRef { readonly sha256: string; readonly size: number }

export interface RegistryEvents {
  /** A version's code or configuration changed, or it was deleted: its environments are stale. */
  changed: [functionName: string, version: string];
  /** A new version was published (still inside the publishing transaction). */
  published: [version: VersionRecord];
}

const notFoundFunction = (name: string, qualifier?: string): ThawError =>
  new ThawError('ResourceNotFound', `Function not found: arn:aws:lambda:us-east-1:000000000000:function:${name}${qualifier === undefined ? '' : `:${qualifier}`}`);

/**
 * Functions, versions, aliases, function URLs and tags in SQLite. Every mutation is one transaction; reads
 * return frozen records. Nothing here knows about HTTP.
 */
export class Registry extends EventEmitter<RegistryEvents> {
  private readonly sql: (text: string) => Database.Statement;

  constructor(private readonly db: Db) {
    super();
    this.sql = statementCache(db);
  }

  /** A prepared statement, prepared once: resolving a version runs on every invoke. */

  // ---- functions and versions ----

  createFunction(name: string, config: FunctionConfig, code: CodeRef, tags: Record<string, string>, publish: boolean): { latest: VersionRecord; published?: VersionRecord } {
    return this.db.transaction(() => {
      const exists = this.sql('SELECT 1 FROM functions WHERE name = ?').get(name);
      if (exists) throw new ThawError('ResourceConflict', `Function already exist: ${name}`);
      const now = Date.now();
      this.sql('INSERT INTO functions (name, created_at, tags) VALUES (?, ?, ?)').run(name, now, JSON.stringify(tags));
      this.insertVersion(name, '$LATEST', config, code, now);
      const latest = this.mustVersion(name, '$LATEST');
      return publish ? { latest, published: this.publishLocked(name, undefined, undefined) } : { latest };
    })();
  }

  functionExists(name: string): boolean {
    return this.sql('SELECT 1 FROM functions WHERE name = ?').get(name) !== undefined;
  }

  getVersion(name: string, version: string): VersionRecord | undefined {
    const r = this.sql('SELECT * FROM versions WHERE function_name = ? AND version = ?').get(name, version) as VersionRow | undefined;
    return r === undefined ? undefined : toVersion(r);
  }

  mustVersion(name: string, version: string): VersionRecord {
    const v = this.getVersion(name, version);
    if (v === undefined) throw notFoundFunction(name, version === '$LATEST' ? undefined : version);
    return v;
  }

  /** Resolve $LATEST, a version number or an alias to the version record (and the alias, if one was named). */
  resolve(name: string, qualifier: string | undefined): { version: VersionRecord; alias?: AliasRecord } {
    const q = qualifier ?? '$LATEST';
    if (q === '$LATEST' || isVersionNumber(q)) return { version: this.mustVersion(name, q) };
    const alias = this.getAlias(name, q);
    if (alias === undefined) {
      if (!this.functionExists(name)) throw notFoundFunction(name);
      throw notFoundFunction(name, q);
    }
    return { version: this.mustVersion(name, alias.functionVersion), alias };
  }

  /** $LATEST of each function, by name; `marker` is the last name of the previous page. */
  listFunctions(marker: string | undefined, max: number, allVersions: boolean): { items: VersionRecord[]; next?: string } {
    const after = marker === undefined ? '' : Buffer.from(marker, 'base64url').toString();
    const rows = (allVersions
      ? this.sql(`SELECT * FROM versions WHERE (function_name || char(0) || printf('%010d', CASE version WHEN '$LATEST' THEN 0 ELSE CAST(version AS INTEGER) END)) > ? ORDER BY function_name, CASE version WHEN '$LATEST' THEN 0 ELSE CAST(version AS INTEGER) END LIMIT ?`)
      : this.sql(`SELECT * FROM versions WHERE version = '$LATEST' AND function_name > ? ORDER BY function_name LIMIT ?`)
    ).all(after, max + 1) as VersionRow[];
    const items = rows.slice(0, max).map(toVersion);
    const last = items[items.length - 1];
    if (rows.length <= max || last === undefined) return { items };
    const next = allVersions
      ? `${last.functionName}\u0000${String(last.version === '$LATEST' ? 0 : Number(last.version)).padStart(10, '0')}`
      : last.functionName;
    return { items, next: Buffer.from(next).toString('base64url') };
  }

  listVersions(name: string, marker: string | undefined, max: number): { items: VersionRecord[]; next?: string } {
    if (!this.functionExists(name)) throw notFoundFunction(name);
    const after = marker === undefined ? -1 : Number(marker);
    const rows = this.sql(`SELECT * FROM versions WHERE function_name = ? AND (CASE version WHEN '$LATEST' THEN 0 ELSE CAST(version AS INTEGER) END) > ? ORDER BY CASE version WHEN '$LATEST' THEN 0 ELSE CAST(version AS INTEGER) END LIMIT ?`)
      .all(name, after, max + 1) as VersionRow[];
    const items = rows.slice(0, max).map(toVersion);
    const last = items[items.length - 1];
    if (rows.length <= max || last === undefined) return { items };
    return { items, next: last.version === '$LATEST' ? '0' : last.version };
  }

  updateCode(name: string, code: CodeRef, revisionId: string | undefined, publish: boolean): { latest: VersionRecord; published?: VersionRecord } {
    return this.db.transaction(() => {
      const cur = this.mustVersion(name, '$LATEST');
      checkRevision(cur.revisionId, revisionId);
      this.sql(`UPDATE versions SET code_sha256 = ?, code_size = ?, revision_id = ?, last_modified = ?,
        last_update_status = 'Successful', last_update_reason = NULL, last_update_reason_code = NULL
        WHERE function_name = ? AND version = '$LATEST'`).run(code.sha256, code.size, randomUUID(), Date.now(), name);
      this.emit('changed', name, '$LATEST');
      const latest = this.mustVersion(name, '$LATEST');
      return publish ? { latest, published: this.publishLocked(name, undefined, undefined) } : { latest };
    })();
  }

  updateConfig(name: string, patch: (c: FunctionConfig) => FunctionConfig, revisionId: string | undefined): VersionRecord {
    return this.db.transaction(() => {
      const cur = this.mustVersion(name, '$LATEST');
      checkRevision(cur.revisionId, revisionId);
      const next = patch(cur.config);
      this.sql(`UPDATE versions SET config = ?, revision_id = ?, last_modified = ?,
        last_update_status = 'Successful', last_update_reason = NULL, last_update_reason_code = NULL
        WHERE function_name = ? AND version = '$LATEST'`).run(JSON.stringify(next), randomUUID(), Date.now(), name);
      this.emit('changed', name, '$LATEST');
      return this.mustVersion(name, '$LATEST');
    })();
  }

  setState(name: string, version: string, state: VersionState, reason: string | null = null, reasonCode: string | null = null): void {
    this.sql('UPDATE versions SET state = ?, state_reason = ?, state_reason_code = ? WHERE function_name = ? AND version = ?')
      .run(state, reason, reasonCode, name, version);
  }

  publishVersion(name: string, codeSha256: string | undefined, description: string | undefined, revisionId: string | undefined): VersionRecord {
    return this.db.transaction(() => this.publishLocked(name, codeSha256, description, revisionId))();
  }

  private publishLocked(name: string, codeSha256Hex: string | undefined, description: string | undefined, revisionId?: string): VersionRecord {
    const latest = this.mustVersion(name, '$LATEST');
    checkRevision(latest.revisionId, revisionId);
    if (codeSha256Hex !== undefined && codeSha256Hex !== latest.codeSha256) {
      throw new ThawError('InvalidParameterValue', `CodeSHA256 (${Buffer.from(codeSha256Hex, 'hex').toString('base64')}) is different from current CodeSHA256 in $LATEST (${Buffer.from(latest.codeSha256, 'hex').toString('base64')}). Please try again with the CodeSHA256 in $LATEST.`);
    }
    // Lambda publishes nothing new when $LATEST equals the newest published version.
    const newest = this.sql(`SELECT * FROM versions WHERE function_name = ? AND version != '$LATEST' ORDER BY CAST(version AS INTEGER) DESC LIMIT 1`).get(name) as VersionRow | undefined;
    if (newest !== undefined) {
      const nv = toVersion(newest);
      const sameConfig = JSON.stringify({ ...nv.config, description: '' }) === JSON.stringify({ ...latest.config, description: '' });
      if (nv.codeSha256 === latest.codeSha256 && sameConfig) return nv;
    }
    const fn = this.sql('SELECT next_version FROM functions WHERE name = ?').get(name) as { next_version: number };
    const version = String(fn.next_version);
    this.sql('UPDATE functions SET next_version = next_version + 1 WHERE name = ?').run(name);
    const config: FunctionConfig = { ...latest.config, description: description ?? latest.config.description };
    this.insertVersion(name, version, config, { sha256: latest.codeSha256, size: latest.codeSize }, Date.now());
    this.emit('published', this.mustVersion(name, version));
    return this.mustVersion(name, version);
  }

  private insertVersion(name: string, version: string, config: FunctionConfig, code: CodeRef, now: number): void {
    this.sql(`INSERT INTO versions (function_name, version, config, code_sha256, code_size, state, last_update_status, revision_id, last_modified)
      VALUES (?, ?, ?, ?, ?, 'Active', 'Successful', ?, ?)`).run(name, version, JSON.stringify(config), code.sha256, code.size, randomUUID(), now);
  }

  /** Delete the function (all versions, aliases, URLs) or one published version. */
  deleteFunction(name: string, qualifier: string | undefined): void {
    this.db.transaction(() => {
      if (!this.functionExists(name)) throw notFoundFunction(name);
      if (qualifier === undefined) {
        const versions = this.sql('SELECT version FROM versions WHERE function_name = ?').pluck().all(name) as string[];
        this.sql('DELETE FROM functions WHERE name = ?').run(name);
        for (const v of versions) this.emit('changed', name, v);
        return;
      }
      if (qualifier === '$LATEST') {
        throw new ThawError('InvalidParameterValue', '$LATEST version cannot be deleted without deleting the function.');
      }
      if (!isVersionNumber(qualifier)) {
        throw new ThawError('InvalidParameterValue', 'Deletion of aliases is not supported by DeleteFunction. Use DeleteAlias instead.');
      }
      this.mustVersion(name, qualifier);
      const users = this.sql('SELECT name, function_version, routing FROM aliases WHERE function_name = ?').all(name) as AliasRow[];
      const used = users.filter((a) => a.function_version === qualifier || (a.routing !== null && qualifier in (JSON.parse(a.routing) as object)));
      if (used.length > 0) {
        throw new ThawError('ResourceConflict', `Unable to delete version because the following aliases reference it: [${used.map((a) => a.name).join(', ')}]`);
      }
      this.sql('DELETE FROM versions WHERE function_name = ? AND version = ?').run(name, qualifier);
      this.sql('DELETE FROM event_invoke_configs WHERE function_name = ? AND qualifier = ?').run(name, qualifier);
      this.emit('changed', name, qualifier);
    })();
  }

  /** Versions waiting for an optimisation (SnapStart) that a restart interrupted. */
  pendingVersions(): VersionRecord[] {
    return (this.sql(`SELECT * FROM versions WHERE state = 'Pending'`).all() as VersionRow[]).map(toVersion);
  }

  /** Every code package still referenced by some version. */
  referencedCode(): Set<string> {
    return new Set(this.sql('SELECT DISTINCT code_sha256 FROM versions').pluck().all() as string[]);
  }

  // ---- aliases ----

  getAlias(name: string, alias: string): AliasRecord | undefined {
    const r = this.sql('SELECT * FROM aliases WHERE function_name = ? AND name = ?').get(name, alias) as AliasRow | undefined;
    return r === undefined ? undefined : toAlias(r);
  }

  mustAlias(name: string, alias: string): AliasRecord {
    const a = this.getAlias(name, alias);
    if (a === undefined) {
      if (!this.functionExists(name)) throw notFoundFunction(name);
      throw new ThawError('ResourceNotFound', `Alias not found: arn:aws:lambda:us-east-1:000000000000:function:${name}:${alias}`);
    }
    return a;
  }

  createAlias(name: string, alias: string, version: string, description: string, weights: Record<string, number> | null): AliasRecord {
    return this.db.transaction(() => {
      if (!this.functionExists(name)) throw notFoundFunction(name);
      this.checkAliasTargets(name, version, weights);
      if (this.getAlias(name, alias) !== undefined) {
        throw new ThawError('ResourceConflict', `Alias already exists: arn:aws:lambda:us-east-1:000000000000:function:${name}:${alias}`);
      }
      this.sql('INSERT INTO aliases (function_name, name, function_version, description, routing, revision_id) VALUES (?, ?, ?, ?, ?, ?)')
        .run(name, alias, version, description, weights === null ? null : JSON.stringify(weights), randomUUID());
      return this.mustAlias(name, alias);
    })();
  }

  updateAlias(name: string, alias: string, patch: { version?: string; description?: string; weights?: Record<string, number> | null }, revisionId: string | undefined): AliasRecord {
    return this.db.transaction(() => {
      const cur = this.mustAlias(name, alias);
      checkRevision(cur.revisionId, revisionId);
      const version = patch.version ?? cur.functionVersion;
      const weights = patch.weights === undefined ? cur.weights : patch.weights;
      this.checkAliasTargets(name, version, weights);
      this.sql('UPDATE aliases SET function_version = ?, description = ?, routing = ?, revision_id = ? WHERE function_name = ? AND name = ?')
        .run(version, patch.description ?? cur.description, weights === null ? null : JSON.stringify(weights), randomUUID(), name, alias);
      return this.mustAlias(name, alias);
    })();
  }

  deleteAlias(name: string, alias: string): void {
    this.db.transaction(() => {
      if (!this.functionExists(name)) throw notFoundFunction(name);
      this.sql('DELETE FROM function_urls WHERE function_name = ? AND qualifier = ?').run(name, alias);
      this.sql('DELETE FROM event_invoke_configs WHERE function_name = ? AND qualifier = ?').run(name, alias);
      this.sql('DELETE FROM aliases WHERE function_name = ? AND name = ?').run(name, alias);
    })();
  }

  listAliases(name: string, version: string | undefined, marker: string | undefined, max: number): { items: AliasRecord[]; next?: string } {
    if (!this.functionExists(name)) throw notFoundFunction(name);
    const rows = this.sql('SELECT * FROM aliases WHERE function_name = ? AND name > ? AND (? IS NULL OR function_version = ?) ORDER BY name LIMIT ?')
      .all(name, marker ?? '', version ?? null, version ?? null, max + 1) as AliasRow[];
    const items = rows.slice(0, max).map(toAlias);
    const last = items[items.length - 1];
    return rows.length > max && last !== undefined ? { items, next: last.name } : { items };
  }

  private checkAliasTargets(name: string, version: string, weights: Readonly<Record<string, number>> | null): void {
    this.mustVersion(name, version);
    if (weights === null) return;
    const entries = Object.entries(weights);
    if (entries.length > 1) throw new ThawError('InvalidParameterValue', 'Number of items in AdditionalVersionWeights cannot be greater than 1');
    for (const [v, w] of entries) {
      if (!isVersionNumber(v)) throw new ThawError('InvalidParameterValue', `Invalid function version ${v}. Function version ${v} is not a published version.`);
      if (version === '$LATEST') throw new ThawError('InvalidParameterValue', '$LATEST is not supported for an alias pointing to more than 1 version');
      if (v === version) throw new ThawError('InvalidParameterValue', `Invalid function version ${v}. Function version ${v} is already included in routing configuration.`);
      if (w < 0 || w > 1) throw new ThawError('InvalidParameterValue', 'Weights must be between 0.0 and 1.0');
      this.mustVersion(name, v);
    }
  }

  // ---- tags ----

  tags(name: string): Record<string, string> {
    const r = this.sql('SELECT tags FROM functions WHERE name = ?').get(name) as { tags: string } | undefined;
    if (r === undefined) throw notFoundFunction(name);
    return JSON.parse(r.tags) as Record<string, string>;
  }

  setTags(name: string, update: (t: Record<string, string>) => Record<string, string>): void {
    this.db.transaction(() => {
      const next = update(this.tags(name));
      if (Object.keys(next).length > 50) throw new ThawError('InvalidParameterValue', 'Number of tags exceeds resource tag limit.');
      this.sql('UPDATE functions SET tags = ? WHERE name = ?').run(JSON.stringify(next), name);
    })();
  }

  // ---- function URLs ----

  getUrl(name: string, qualifier: string): FunctionUrlRecord | undefined {
    const r = this.sql('SELECT * FROM function_urls WHERE function_name = ? AND qualifier = ?').get(name, qualifier) as UrlRow | undefined;
    return r === undefined ? undefined : toUrl(r);
  }

  getUrlById(urlId: string): FunctionUrlRecord | undefined {
    const r = this.sql('SELECT * FROM function_urls WHERE url_id = ?').get(urlId) as UrlRow | undefined;
    return r === undefined ? undefined : toUrl(r);
  }

  createUrl(name: string, qualifier: string, authType: 'NONE' | 'AWS_IAM', cors: Record<string, unknown> | null, invokeMode: string): FunctionUrlRecord {
    return this.db.transaction(() => {
      if (!this.functionExists(name)) throw notFoundFunction(name);
      if (qualifier !== '') {
        if (qualifier === '$LATEST' || isVersionNumber(qualifier)) {
          throw new ThawError('InvalidParameterValue', 'Function URL can only be created for $LATEST (no qualifier) or an alias.');
        }
        this.mustAlias(name, qualifier);
      }
      if (this.getUrl(name, qualifier) !== undefined) {
        throw new ThawError('ResourceConflict', `Failed to create function url config for [functionArn = arn:aws:lambda:us-east-1:000000000000:function:${name}${qualifier ? `:${qualifier}` : ''}]. Error message:  FunctionUrlConfig exists for this Lambda function`);
      }
      const now = Date.now();
      const urlId = randomBytes(16).toString('hex');
      this.sql('INSERT INTO function_urls (function_name, qualifier, url_id, auth_type, cors, invoke_mode, created_at, last_modified) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
        .run(name, qualifier, urlId, authType, cors === null ? null : JSON.stringify(cors), invokeMode, now, now);
      return this.getUrl(name, qualifier) as FunctionUrlRecord;
    })();
  }

  updateUrl(name: string, qualifier: string, patch: { authType?: 'NONE' | 'AWS_IAM'; cors?: Record<string, unknown> | null; invokeMode?: string }): FunctionUrlRecord {
    return this.db.transaction(() => {
      const cur = this.mustUrl(name, qualifier);
      this.sql('UPDATE function_urls SET auth_type = ?, cors = ?, invoke_mode = ?, last_modified = ? WHERE function_name = ? AND qualifier = ?')
        .run(patch.authType ?? cur.authType, patch.cors === undefined ? (cur.cors === null ? null : JSON.stringify(cur.cors)) : (patch.cors === null ? null : JSON.stringify(patch.cors)),
          patch.invokeMode ?? cur.invokeMode, Date.now(), name, qualifier);
      return this.mustUrl(name, qualifier);
    })();
  }

  mustUrl(name: string, qualifier: string): FunctionUrlRecord {
    const u = this.getUrl(name, qualifier);
    if (u === undefined) {
      if (!this.functionExists(name)) throw notFoundFunction(name);
      throw new ThawError('ResourceNotFound', 'The resource you requested does not exist.');
    }
    return u;
  }

  deleteUrl(name: string, qualifier: string): void {
    this.mustUrl(name, qualifier);
    this.sql('DELETE FROM function_urls WHERE function_name = ? AND qualifier = ?').run(name, qualifier);
  }

  listUrls(name: string, marker: string | undefined, max: number): { items: FunctionUrlRecord[]; next?: string } {
    if (!this.functionExists(name)) throw notFoundFunction(name);
    const rows = this.sql('SELECT * FROM function_urls WHERE function_name = ? AND (? IS NULL OR qualifier > ?) ORDER BY qualifier LIMIT ?')
      .all(name, marker ?? null, marker ?? null, max + 1) as UrlRow[];
    const items = rows.slice(0, max).map(toUrl);
    const last = items[items.length - 1];
    return rows.length > max && last !== undefined ? { items, next: last.qualifier } : { items };
  }

  // ---- account-wide ----

  counts(): { functions: number; codeBytes: number } {
    const r = this.sql('SELECT (SELECT COUNT(*) FROM functions) AS f, (SELECT COALESCE(SUM(size), 0) FROM code) AS b').get() as { f: number; b: number };
    return { functions: r.f, codeBytes: r.b };
  }
}

function checkRevision(current: string, expected: string | undefined): void {
  if (expected !== undefined && expected !== current) {
    throw new ThawError('PreconditionFailed', 'The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id');
  }
}
