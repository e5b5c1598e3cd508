import type Database from 'better-sqlite3';
import { statementCache, type Db } from './db.js';
import { ThawError } from '../util/errors.js';
import { functionArn } from './arn.js';

/** Lambda's defaults for asynchronous invocation. */
export const ASYNC_DEFAULTS = { maximumRetryAttempts: 2, maximumEventAgeInSeconds: 21600 } as const;

/** What a caller may set; null means not set (the default applies, or no destination). */
export interface EventInvokeSettings {
  readonly maximumRetryAttempts: number | null;
  readonly maximumEventAgeInSeconds: number | null;
  /** Destination function ARNs. */
  readonly onSuccess: string | null;
  readonly onFailure: string | null;
}

export interface EventInvokeConfig extends EventInvokeSettings {
  readonly functionName: string;
  /** $LATEST, a version number or an alias name. */
  readonly qualifier: string;
  readonly lastModified: number;
}

interface Row {
  function_name: string; qualifier: string; max_retry_attempts: number | null; max_event_age_sec: number | null;
  on_success: string | null; on_failure: string | null; last_modified: number;
}

const toConfig = (r: Row): EventInvokeConfig => Object.freeze({
  functionName: r.function_name,
  qualifier: r.qualifier,
  maximumRetryAttempts: r.max_retry_attempts,
  maximumEventAgeInSeconds: r.max_event_age_sec,
  onSuccess: r.on_success,
  onFailure: r.on_failure,
  lastModified: r.last_modified,
});

const missing = (region: string, name: string, qualifier: string): ThawError =>
  new ThawError('ResourceNotFound', `The function ${functionArn(region, name, qualifier)} doesn't have an EventInvokeConfig`);

/**
 * Asynchronous invocation settings per function and qualifier, as PutFunctionEventInvokeConfig keeps them: the
 * settings of the qualifier an event was invoked with apply to it ($LATEST when unqualified). Removed with
 * the function.
 */
export class EventInvokeConfigs {
  private readonly sql: (text: string) => Database.Statement;

  constructor(private readonly db: Db, private readonly region: string) {
    this.sql = statementCache(db);
  }

  get(name: string, qualifier: string): EventInvokeConfig | undefined {
    const r = this.sql('SELECT * FROM event_invoke_configs WHERE function_name = ? AND qualifier = ?').get(name, qualifier) as Row | undefined;
    return r === undefined ? undefined : toConfig(r);
  }

  mustGet(name: string, qualifier: string): EventInvokeConfig {
    const c = this.get(name, qualifier);
    if (c === undefined) throw missing(this.region, name, qualifier);
    return c;
  }

  /** Replace the settings of a qualifier (PutFunctionEventInvokeConfig). */
  put(name: string, qualifier: string, s: EventInvokeSettings): EventInvokeConfig {
    this.sql(`INSERT INTO event_invoke_configs (function_name, qualifier, max_retry_attempts, max_event_age_sec, on_success, on_failure, last_modified)
      VALUES (?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (function_name, qualifier) DO UPDATE SET max_retry_attempts = excluded.max_retry_attempts,
        max_event_age_sec = excluded.max_event_age_sec, on_success = excluded.on_success, on_failure = excluded.on_failure,
        last_modified = excluded.last_modified`)
      .run(name, qualifier, s.maximumRetryAttempts, s.maximumEventAgeInSeconds, s.onSuccess, s.onFailure, Date.now());
    return this.mustGet(name, qualifier);
  }

  /** Change only the given settings of an existing configuration (UpdateFunctionEventInvokeConfig). */
  update(name: string, qualifier: string, patch: Partial<EventInvokeSettings>): EventInvokeConfig {
    return this.db.transaction(() => {
      const cur = this.mustGet(name, qualifier);
      return this.put(name, qualifier, {
        maximumRetryAttempts: patch.maximumRetryAttempts === undefined ? cur.maximumRetryAttempts : patch.maximumRetryAttempts,
        maximumEventAgeInSeconds: patch.maximumEventAgeInSeconds === undefined ? cur.maximumEventAgeInSeconds : patch.maximumEventAgeInSeconds,
        onSuccess: patch.onSuccess === undefined ? cur.onSuccess : patch.onSuccess,
        onFailure: patch.onFailure === undefined ? cur.onFailure : patch.onFailure,
      });
    })();
  }

  delete(name: string, qualifier: string): void {
    const r = this.sql('DELETE FROM event_invoke_configs WHERE function_name = ? AND qualifier = ?').run(name, qualifier);
    if (r.changes === 0) throw missing(this.region, name, qualifier);
  }

  /** The function's configurations by qualifier; `marker` is the last qualifier of the previous page. */
  list(name: string, marker: string | undefined, max: number): { items: EventInvokeConfig[]; next?: string } {
    const rows = this.sql('SELECT * FROM event_invoke_configs WHERE function_name = ? AND qualifier > ? ORDER BY qualifier LIMIT ?')
      .all(name, marker ?? '', max + 1) as Row[];
    const items = rows.slice(0, max).map(toConfig);
    const last = items[items.length - 1];
    return rows.length > max && last !== undefined ? { items, next: last.qualifier } : { items };
  }
}

/** FunctionEventInvokeConfig as the Lambda API returns it (LastModified in epoch seconds). */
export function renderEventInvokeConfig(c: EventInvokeConfig, region: string): Record<string, unknown> {
  return {
    LastModified: c.lastModified / 1000,
    FunctionArn: functionArn(region, c.functionName, c.qualifier),
    ...(c.maximumRetryAttempts === null ? {} : { MaximumRetryAttempts: c.maximumRetryAttempts }),
    ...(c.maximumEventAgeInSeconds === null ? {} : { MaximumEventAgeInSeconds: c.maximumEventAgeInSeconds }),
    DestinationConfig: {
      OnSuccess: c.onSuccess === null ? {} : { Destination: c.onSuccess },
      OnFailure: c.onFailure === null ? {} : { Destination: c.onFailure },
    },
  };
}
