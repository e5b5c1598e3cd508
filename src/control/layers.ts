import type Database from 'better-sqlite3';
import { statementCache, type Db } from './db.js';
import { ACCOUNT_ID } from './arn.js';
import { ThawError } from '../util/errors.js';
import { LAYER_VERSION_ARN_PATTERN, parseLayerVersionArn } from './layer-schema.js';

/** One version of a layer (frozen). Its content is a package in the code store, by SHA-256. */
export interface LayerVersionRecord {
  readonly layerName: string;
  readonly version: number;
  readonly description: string;
  readonly licenseInfo: string | null;
  readonly compatibleRuntimes: readonly string[];
  readonly compatibleArchitectures: readonly string[];
  /** Hex SHA-256 of the layer archive. */
  readonly codeSha256: string;
  /** Bytes of the archive, and of its extracted content. */
  readonly codeSize: number;
  readonly unzippedSize: number;
  readonly createdAt: number;
  /** Deleted versions are invisible to the API but keep serving the functions that use them. */
  readonly deleted: boolean;
}

export interface LayerContent {
  readonly sha256: string;
  readonly size: number;
  readonly unzippedSize: number;
}

export interface LayerFilter {
  readonly runtime?: string;
  readonly architecture?: string;
}

interface Row {
  layer_name: string; version: number; description: string; license_info: string | null; compatible_runtimes: string;
  compatible_architectures: string; code_sha256: string; code_size: number; unzipped_size: number; created_at: number;
  deleted_at: number | null;
}

const toRecord = (r: Row): LayerVersionRecord => Object.freeze({
  layerName: r.layer_name,
  version: r.version,
  description: r.description,
  licenseInfo: r.license_info,
  compatibleRuntimes: Object.freeze(JSON.parse(r.compatible_runtimes) as string[]),
  compatibleArchitectures: Object.freeze(JSON.parse(r.compatible_architectures) as string[]),
  codeSha256: r.code_sha256,
  codeSize: r.code_size,
  unzippedSize: r.unzipped_size,
  createdAt: r.created_at,
  deleted: r.deleted_at !== null,
});

/** Lambda's limits on a function's layers. */
export const MAX_FUNCTION_LAYERS = 5;
export const MAX_UNZIPPED_WITH_LAYERS = 262_144_000;

const FILTER = `
  AND (@runtime IS NULL OR EXISTS (SELECT 1 FROM json_each(compatible_runtimes) WHERE value = @runtime))
  AND (@arch IS NULL OR EXISTS (SELECT 1 FROM json_each(compatible_architectures) WHERE value = @arch))`;

export const layerArn = (region: string, name: string): string => `arn:aws:lambda:${region}:${ACCOUNT_ID}:layer:${name}`;
export const layerVersionArn = (region: string, name: string, version: number): string => `${layerArn(region, name)}:${version}`;

/**
 * Layers and their versions in SQLite. Versions number from 1 per layer and a number is never reused, even after
 * its version is deleted. Deleting a version hides it from the API and from new function configurations; the
 * row and its content stay for the function versions that already use it (as Lambda keeps a copy).
 */
export class LayerRegistry {
  private readonly sql: (text: string) => Database.Statement;

  constructor(private readonly db: Db, private readonly region: string) {
    this.sql = statementCache(db);
  }

  publish(name: string, meta: { description: string; licenseInfo: string | null; runtimes: readonly string[]; architectures: readonly string[] }, content: LayerContent): LayerVersionRecord {
    return this.db.transaction(() => {
      const now = Date.now();
      this.sql('INSERT INTO layers (name, created_at) VALUES (?, ?) ON CONFLICT(name) DO NOTHING').run(name, now);
      const { next_version: version } = this.sql('SELECT next_version FROM layers WHERE name = ?').get(name) as { next_version: number };
      this.sql('UPDATE layers SET next_version = next_version + 1 WHERE name = ?').run(name);
      this.sql(`INSERT INTO layer_versions (layer_name, version, description, license_info, compatible_runtimes, compatible_architectures,
        code_sha256, code_size, unzipped_size, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
        .run(name, version, meta.description, meta.licenseInfo, JSON.stringify(meta.runtimes), JSON.stringify(meta.architectures),
          content.sha256, content.size, content.unzippedSize, now);
      return this.get(name, version) as LayerVersionRecord;
    })();
  }

  /** A version that has not been deleted. */
  get(name: string, version: number): LayerVersionRecord | undefined {
    const r = this.sql('SELECT * FROM layer_versions WHERE layer_name = ? AND version = ? AND deleted_at IS NULL').get(name, version) as Row | undefined;
    return r === undefined ? undefined : toRecord(r);
  }

  mustGet(name: string, version: number): LayerVersionRecord {
    const v = this.get(name, version);
    if (v === undefined) throw new ThawError('ResourceNotFound', 'The resource you requested does not exist.');
    return v;
  }

  /** Delete a version; deleting one that does not exist (any more) is not an error, as on Lambda. */
  delete(name: string, version: number): void {
    this.sql('UPDATE layer_versions SET deleted_at = ? WHERE layer_name = ? AND version = ? AND deleted_at IS NULL').run(Date.now(), name, version);
  }

  /** Each layer with its newest version matching the filter, by name; `marker` is the last name of the previous page. */
  list(filter: LayerFilter, marker: string | undefined, max: number): { items: LayerVersionRecord[]; next?: string } {
    const after = marker === undefined ? '' : Buffer.from(marker, 'base64url').toString();
    const rows = this.sql(`SELECT * FROM (
        SELECT *, ROW_NUMBER() OVER (PARTITION BY layer_name ORDER BY version DESC) AS rn FROM layer_versions
        WHERE deleted_at IS NULL AND layer_name > @after ${FILTER}
      ) WHERE rn = 1 ORDER BY layer_name LIMIT @limit`)
      .all({ after, runtime: filter.runtime ?? null, arch: filter.architecture ?? null, limit: max + 1 }) as Row[];
    const items = rows.slice(0, max).map(toRecord);
    const last = items[items.length - 1];
    return rows.length > max && last !== undefined ? { items, next: Buffer.from(last.layerName).toString('base64url') } : { items };
  }

  /** A layer's versions matching the filter, newest first; `marker` is the last version of the previous page. */
  listVersions(name: string, filter: LayerFilter, marker: string | undefined, max: number): { items: LayerVersionRecord[]; next?: string } {
    const before = marker === undefined || !/^[0-9]{1,15}$/.test(marker) ? Number.MAX_SAFE_INTEGER : Number(marker);
    const rows = this.sql(`SELECT * FROM layer_versions WHERE layer_name = @name AND deleted_at IS NULL AND version < @before ${FILTER}
      ORDER BY version DESC LIMIT @limit`)
      .all({ name, before, runtime: filter.runtime ?? null, arch: filter.architecture ?? null, limit: max + 1 }) as Row[];
    const items = rows.slice(0, max).map(toRecord);
    const last = items[items.length - 1];
    return rows.length > max && last !== undefined ? { items, next: String(last.version) } : { items };
  }

  /**
   * The layer versions a function configuration names, checked as Lambda checks them when a function is created
   * or its configuration updated: at most five, well-formed ARNs, one version per layer, each existing and not
   * deleted. Returns them in order.
   */
  forFunction(arns: readonly string[]): LayerVersionRecord[] {
    const bad = arns.filter((a) => parseLayerVersionArn(a) === undefined);
    if (bad.length > 0) {
      throw new ThawError('Validation', `1 validation error detected: Value '[${arns.join(', ')}]' at 'layers' failed to satisfy constraint: Member must satisfy constraint: [Member must have length less than or equal to 140, Member must have length greater than or equal to 1, Member must satisfy regular expression pattern: ${LAYER_VERSION_ARN_PATTERN}, Member must not be null]`);
    }
    if (arns.length > MAX_FUNCTION_LAYERS) throw new ThawError('InvalidParameterValue', `Cannot reference more than ${MAX_FUNCTION_LAYERS} layers.`);
    const seen = new Map<string, string>();
    const out: LayerVersionRecord[] = [];
    for (const arn of arns) {
      const ref = parseLayerVersionArn(arn) as NonNullable<ReturnType<typeof parseLayerVersionArn>>;
      const earlier = seen.get(ref.name);
      if (earlier !== undefined) {
        throw new ThawError('InvalidParameterValue', `Two different versions of the same layer are not allowed to be referenced in the same function. ${earlier} and ${arn} are versions of the same layer.`);
      }
      seen.set(ref.name, arn);
      const v = ref.region === this.region && ref.account === ACCOUNT_ID ? this.get(ref.name, ref.version) : undefined;
      if (v === undefined) throw new ThawError('InvalidParameterValue', `Layer version ${arn} does not exist.`);
      out.push(v);
    }
    return out;
  }

  /** The versions a function version is pinned to, deleted ones included: what its environments mount at /opt. */
  pinned(arns: readonly string[]): LayerVersionRecord[] {
    return arns.map((arn) => {
      const ref = parseLayerVersionArn(arn);
      const r = ref === undefined ? undefined : this.sql('SELECT * FROM layer_versions WHERE layer_name = ? AND version = ?').get(ref.name, ref.version) as Row | undefined;
      if (r === undefined) throw new ThawError('Service', `layer version ${arn} is not known to this server`, { arn });
      return toRecord(r);
    });
  }

  /** Archive size of a layer version named in a function configuration (deleted ones included). */
  codeSize(arn: string): number | undefined {
    const ref = parseLayerVersionArn(arn);
    if (ref === undefined) return undefined;
    const r = this.sql('SELECT code_size FROM layer_versions WHERE layer_name = ? AND version = ?').get(ref.name, ref.version) as { code_size: number } | undefined;
    return r?.code_size;
  }

  /** Layer content still needed: every live version, and deleted ones that some function version still uses. */
  referencedCode(): Set<string> {
    const live = this.sql('SELECT DISTINCT code_sha256 FROM layer_versions WHERE deleted_at IS NULL').pluck().all() as string[];
    const used = this.sql(`SELECT DISTINCT j.value FROM versions, json_each(json_extract(versions.config, '$.layers')) AS j`).pluck().all() as string[];
    const out = new Set(live);
    for (const v of this.pinnedIfKnown(used)) out.add(v.codeSha256);
    return out;
  }

  /** Every distinct ordered list of layer ARNs that some function version uses. */
  layerLists(): string[][] {
    const rows = this.sql(`SELECT DISTINCT json_extract(config, '$.layers') FROM versions WHERE json_array_length(json_extract(config, '$.layers')) > 0`).pluck().all() as string[];
    return rows.map((r) => JSON.parse(r) as string[]);
  }

  private pinnedIfKnown(arns: readonly string[]): LayerVersionRecord[] {
    const out: LayerVersionRecord[] = [];
    for (const arn of arns) {
      try {
        out.push(...this.pinned([arn]));
      } catch {
        // Not a layer of this server (never accepted by forFunction): nothing to keep.
      }
    }
    return out;
  }
}
