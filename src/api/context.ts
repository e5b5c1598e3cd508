import type { IncomingHttpHeaders } from 'node:http';
import type { Logger } from '../util/log.js';
import type { Registry } from '../control/registry.js';
import type { CodeStore } from '../control/code-store.js';
import type { LayerRegistry } from '../control/layers.js';
import type { Store } from '../store/store.js';
import type { Invoker } from '../router/invoker.js';
import type { Pool } from '../worker/pool.js';
import type { LogWriter } from '../logs/writer.js';
import type { Concurrency } from '../router/concurrency.js';
import type { ProvisionedConcurrency } from '../worker/provisioned.js';
import type { AsyncInvoker } from '../router/async-invoker.js';
import type { EventInvokeConfigs } from '../control/event-invoke-config.js';

/** What every API handler may use. */
export interface ApiContext {
  readonly registry: Registry;
  readonly code: CodeStore;
  readonly layers: LayerRegistry;
  /** The chunk store (for its statistics). */
  readonly store?: Store;
  readonly invoker: Invoker;
  readonly pool: Pool;
  readonly logs: LogWriter;
  readonly region: string;
  /** Secret for Thaw-signed download links (GetFunction's Code.Location). */
  readonly linkSecret: Buffer;
  readonly logger: Logger;
  readonly limits: { readonly accountConcurrency: number };
  /** Account and reserved concurrency (in-flight invocations). */
  readonly concurrency: Concurrency;
  readonly provisioned: ProvisionedConcurrency;
  /** Event invocations: the durable queue, retries and destinations. */
  readonly events: AsyncInvoker;
  readonly eventConfigs: EventInvokeConfigs;
}

export interface ApiRequest {
  readonly method: string;
  readonly url: URL;
  readonly params: Readonly<Record<string, string>>;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
  /** Base URL the client used to reach us (http://host:port). */
  readonly origin: string;
}

export interface ApiResponse {
  readonly status: number;
  /** JSON body; or `raw` for bytes as they are. */
  readonly json?: unknown;
  readonly raw?: Buffer;
  readonly headers?: Readonly<Record<string, string>>;
}

export type Handler = (ctx: ApiContext, req: ApiRequest) => ApiResponse | Promise<ApiResponse>;

export interface Route {
  readonly method: string;
  readonly pattern: RegExp;
  readonly keys: readonly string[];
  readonly handler: Handler;
  /** Largest accepted request body. */
  readonly maxBody: number;
  readonly operation: string;
}

/** Default body caps: requests that carry a document, and those that should carry nothing. */
const MAX_DOCUMENT_BODY = 1024 * 1024;
const MAX_EMPTY_BODY = 16 * 1024;

/** A route from a path template like /2015-03-31/functions/{FunctionName}/aliases/{Name}. */
export function route(method: string, template: string, operation: string, handler: Handler, maxBody = method === 'GET' || method === 'DELETE' ? MAX_EMPTY_BODY : MAX_DOCUMENT_BODY): Route {
  const keys: string[] = [];
  const source = template.replace(/\/$/, '').replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{(\w+)\}/g, (_m, k: string) => {
    keys.push(k);
    return '([^/]+)';
  });
  return { method, pattern: new RegExp(`^${source}/?$`), keys, handler, maxBody, operation };
}
