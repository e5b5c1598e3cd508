import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import type { Logger } from './util/log.js';
import { silentLogger } from './util/log.js';
import { openDb, type Db } from './control/db.js';
import { Registry } from './control/registry.js';
import { CodeStore } from './control/code-store.js';
import { CodeSweeper } from './control/code-sweep.js';
import { LayerRegistry } from './control/layers.js';
import { OptDirs } from './worker/opt.js';
import { LogWriter } from './logs/writer.js';
import { Pool } from './worker/pool.js';
import { Metrics } from './util/metrics.js';
import { CodeCacheStore } from './worker/code-cache.js';
import { keepAlivePolicy, type HistogramPolicyOptions, type KeepAlivePolicyName } from './worker/keepalive.js';
import { SnapStart } from './snapshot/service.js';
import { Invoker } from './router/invoker.js';
import { Concurrency, defaultAccountConcurrency } from './router/concurrency.js';
import { ConcurrencyStore } from './control/concurrency-store.js';
import { ProvisionedConcurrency } from './worker/provisioned.js';
import { AsyncInvoker } from './router/async-invoker.js';
import { SqliteEventQueue } from './router/sqlite-queue.js';
import { EventInvokeConfigs } from './control/event-invoke-config.js';
import { RuntimeApiServer } from './sandbox/runtime-api.js';
import { selectDriver } from './sandbox/select.js';
import { IdentityPool } from './sandbox/identity.js';
import { environmentPids } from './sandbox/cgroups.js';
import { EphemeralStorage, ephemeralDirFor } from './sandbox/ephemeral.js';
import { createApiServer } from './api/server.js';
import type { HttpLimits } from './api/limits.js';
import { DEFAULT_REGION } from './control/arn.js';
import type { VersionRecord } from './control/model.js';
import type { Credentials } from './api/sigv4.js';
import { openStore, parseOrigin, resetRuntimeDir, runtimeDirFor } from './store/open.js';
import { AccessTraces } from './store/traces.js';

export interface ThawOptions {
  readonly port: number;
  readonly host?: string;
  readonly dataDir: string;
  readonly credentials?: Credentials;
  readonly driver?: 'namespaces' | 'process';
  /** First host uid of the range sandboxes run as, one uid per environment (namespaces driver). */
  readonly sandboxUidBase?: number;
  readonly keepAliveMs?: number;
  /**
   * `histogram` (default): keep-alive and pre-warm from each version's own idle times, keepAliveMs while it has
   * too few; `fixed`: every idle environment is kept keepAliveMs.
   */
  readonly keepAlivePolicy?: KeepAlivePolicyName;
  /** Histogram parameters (bin width, range, thresholds); the paper's values by default. */
  readonly keepAliveHistogram?: HistogramPolicyOptions;
  /** A pre-warm starts this long before the invocation it expects. */
  readonly prewarmLeadMs?: number;
  readonly maxEnvironments?: number;
  readonly maxMemoryBytes?: number;
  readonly region?: string;
  readonly logger?: Logger;
  /** Init phase limit (Lambda: 10 s). */
  readonly initTimeoutMs?: number;
  /** Cap on stored log bytes, all functions together (default 128 MiB). */
  readonly logCapBytes?: number;
  /** Cap on one function's stored log bytes (default 16 MiB). */
  readonly logFunctionCapBytes?: number;
  /** One function's log rate, bytes per second (default 2 MiB/s, with a burst of 8 MiB): output beyond it is dropped. */
  readonly logRateBytesPerSecond?: number;
  /** Keep pre-started runtimes ready (namespaces driver only). Default true. */
  readonly stemCells?: boolean;
  /** Produce and use post-init code caches for Node functions. Default true. */
  readonly codeCache?: boolean;
  /** Freeze environments while they wait for their next event (default true). */
  readonly freezeIdle?: boolean;
  /** The account's concurrency limit (invocations in flight). Default: sized to the machine, at most the environment cap. */
  readonly accountConcurrency?: number;
  /** How long an invocation waits for room on a full worker before it is throttled. Default 10 s. */
  readonly capacityWaitMs?: number;
  /** Event invocations run at once. Default 4. */
  readonly asyncConcurrency?: number;
  /** Wait before an event's first retry, doubled for the second (Lambda: 60 s). */
  readonly asyncRetryBaseMs?: number;
  /** Chunk origin: a directory (default DATA/store) or s3://bucket/prefix. */
  readonly storeOrigin?: string;
  /** Endpoint of an S3-compatible service for an s3:// origin. */
  readonly storeEndpoint?: string;
  /** Limits of the HTTP front door (timeouts, connection and body budgets); see api/limits.ts. */
  readonly http?: Partial<HttpLimits>;
  /** Directory on a disk for the functions' /tmp filesystems (default DATA/ephemeral). */
  readonly ephemeralDir?: string;
  /** Disk space the /tmp filesystems always leave free there (default 1 GiB). */
  readonly ephemeralReserveBytes?: number;
  /** The account's code storage limit, in bytes as stored (Lambda's TotalCodeSize: 75 GB). */
  readonly codeStorageBytes?: number;
}

export interface Thaw {
  readonly url: string;
  readonly port: number;
  readonly credentials: Credentials;
  /** Where generated credentials were stored, when they were generated. */
  readonly credentialsFile?: string;
  readonly driverName: string;
  close(): Promise<void>;
}

/** Credentials from the options, the environment, or a key pair generated once into the data directory (0600). */
function loadCredentials(dataDir: string, given: Credentials | undefined): { creds: Credentials; file?: string } {
  if (given !== undefined) return { creds: given };
  const id = process.env.THAW_ACCESS_KEY_ID;
  const secret = process.env.THAW_SECRET_ACCESS_KEY;
  if (id !== undefined && id !== '' && secret !== undefined && secret !== '') return { creds: { accessKeyId: id, secretAccessKey: secret } };
  const file = join(dataDir, 'credentials.json');
  if (existsSync(file)) return { creds: JSON.parse(readFileSync(file, 'utf8')) as Credentials, file };
  const creds: Credentials = {
    accessKeyId: `AKIA${randomBytes(8).toString('hex').toUpperCase()}`,
    secretAccessKey: randomBytes(30).toString('base64'),
  };
  writeFileSync(file, `${JSON.stringify(creds, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
  return { creds, file };
}

function setting(db: Db, key: string, make: () => string): string {
  const row = db.prepare('SELECT value FROM settings WHERE key = ?').get(key) as { value: string } | undefined;
  if (row !== undefined) return row.value;
  const value = make();
  db.prepare('INSERT INTO settings (key, value) VALUES (?, ?)').run(key, value);
  return value;
}

/** Start everything on one machine: state, worker pool, Runtime API, HTTP API. */
export async function startThaw(o: ThawOptions): Promise<Thaw> {
  const logger = o.logger ?? silentLogger;
  const dataDir = resolve(o.dataDir);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const { creds, file } = loadCredentials(dataDir, o.credentials);
  const db = openDb(join(dataDir, 'thaw.db'));
  const region = o.region ?? DEFAULT_REGION;
  const registry = new Registry(db);
  // Decrypted code and snapshots for execution live only here, outside the data directory.
  const runtimeDir = runtimeDirFor(dataDir);
  resetRuntimeDir(runtimeDir);
  const store = openStore({
    dataDir,
    db,
    logger,
    ...(o.storeOrigin === undefined ? {} : { origin: parseOrigin(o.storeOrigin, o.storeEndpoint) }),
  });
  const traces = new AccessTraces(store, { logger });
  const code = new CodeStore(db, dataDir, store, runtimeDir, logger, (sha) => traces.forCode(sha), o.codeStorageBytes);
  await code.importLegacy();
  const layers = new LayerRegistry(db, region);
  const referenced = new Set([...registry.referencedCode(), ...layers.referencedCode()]);
  await code.collect(referenced);
  const codeCaches = o.codeCache ?? true ? new CodeCacheStore(store, logger, undefined, (key) => traces.forCodeCache(key)) : undefined;
  codeCaches?.dropLegacy(dataDir);
  codeCaches?.collect(referenced);
  // Layers merged for /opt are decrypted code too: under the runtime directory.
  const opt = new OptDirs(join(runtimeDir, 'opt'), logger);
  const layerShas = (arns: readonly string[]): string[] => layers.pinned(arns).map((l) => l.codeSha256);
  const keep = new Set<string>();
  for (const arns of layers.layerLists()) {
    try {
      keep.add(OptDirs.key(layerShas(arns)));
    } catch (err) {
      // Layers stored before they were checked: the function fails to start until its Layers are fixed.
      logger.warn({ err, layers: arns }, 'a function names layer versions this server does not have');
    }
  }
  await opt.collect(keep);
  const optDir = (v: VersionRecord): Promise<string | undefined> => opt.dir(layerShas(v.config.layers), (sha) => code.materialise(sha));
  const logs = await LogWriter.open({
    file: join(dataDir, 'logs.db'),
    legacyDb: join(dataDir, 'thaw.db'),
    logger,
    retention: {
      ...(o.logCapBytes === undefined ? {} : { capBytes: o.logCapBytes }),
      ...(o.logFunctionCapBytes === undefined ? {} : { functionCapBytes: o.logFunctionCapBytes }),
    },
    ...(o.logRateBytesPerSecond === undefined ? {} : { rate: { bytesPerSecond: o.logRateBytesPerSecond } }),
  });
  // The lines moved out of thaw.db left free pages there: give them back to the filesystem, once.
  if (logs.imported > 0) {
    db.exec('VACUUM');
    db.pragma('wal_checkpoint(TRUNCATE)');
  }
  // Functions' /tmp (EphemeralStorage): disk-backed filesystems for the namespaces driver; the process driver
  // isolates nothing and leaves /tmp as it is.
  const ephemeral = o.driver === 'process' || process.getuid?.() !== 0 ? undefined : await EphemeralStorage.open({
    dir: ephemeralDirFor(dataDir, o.ephemeralDir), logger, spares: 2, ...(o.ephemeralReserveBytes === undefined ? {} : { reserveBytes: o.ephemeralReserveBytes }),
  });
  const driver = await selectDriver({
    ...(o.driver === undefined ? {} : { preferred: o.driver }),
    logger,
    ...(o.sandboxUidBase === undefined && ephemeral === undefined ? {} : {
      namespaces: {
        ...(o.sandboxUidBase === undefined ? {} : { identities: new IdentityPool({ base: o.sandboxUidBase }) }),
        ...(ephemeral === undefined ? {} : { ephemeral }),
      },
    }),
  });
  const rapi = new RuntimeApiServer({ logger });
  const socketDir = mkdtempSync(join(tmpdir(), 'thaw-rapi-'));
  const memory = o.maxMemoryBytes ?? Math.floor(totalmem() * 0.75);
  const snapstart = new SnapStart({
    registry, codeDir: (sha) => code.materialise(sha), driver, dataDir, region, logger, store, runtimeDir, optDir,
    readOptions: (v) => traces.forSnapshot(v.functionName, v.version),
  });
  registry.on('published', (v) => snapstart.optimise(v));
  await snapstart.resume(registry.pendingVersions());
  const housekeeping = async (): Promise<void> => {
    await snapstart.expire();
    const r = await store.collect();
    if (r.removed > 0) logger.info({ chunks: r.removed, bytes: r.removedBytes }, 'unreferenced chunks removed');
  };
  await housekeeping();
  const expiry = setInterval(() => void housekeeping().catch((err: unknown) => logger.warn({ err }, 'store housekeeping failed')), 6 * 60 * 60 * 1000);
  expiry.unref();
  const maxEnvironments = o.maxEnvironments ?? Math.max(16, cpus().length * 32);
  const accountConcurrency = o.accountConcurrency ?? Math.min(maxEnvironments, defaultAccountConcurrency(cpus().length, memory));
  const metrics = new Metrics();
  const pool = new Pool({
    metrics,
    driver,
    rapi,
    logs,
    codeDir: (sha) => code.materialise(sha),
    optDir,
    beforeColdStart: (v) => traces.begin({ key: `${v.functionName}:${v.version}:${v.codeSha256}`, functionName: v.functionName, version: v.version, codeSha256: v.codeSha256 }),
    socketDir,
    region,
    logger,
    keepAliveMs: o.keepAliveMs ?? 5 * 60 * 1000,
    keepAlivePolicy: keepAlivePolicy(o.keepAlivePolicy ?? 'histogram', o.keepAliveMs ?? 5 * 60 * 1000, o.keepAliveHistogram),
    ...(o.prewarmLeadMs === undefined ? {} : { prewarmLeadMs: o.prewarmLeadMs }),
    maxEnvironments,
    maxMemoryBytes: memory,
    ...(o.capacityWaitMs === undefined ? {} : { capacityWaitMs: o.capacityWaitMs }),
    ...(o.initTimeoutMs === undefined ? {} : { initTimeoutMs: o.initTimeoutMs }),
    pidsPerEnvironment: environmentPids(maxEnvironments),
    ...(o.freezeIdle === false ? { freezeIdleAfterMs: -1 } : {}),
    ...(codeCaches === undefined ? {} : { codeCaches }),
    snapshots: (v) => snapstart.restorable(v),
  });
  metrics.watch({ environments: () => pool.environmentStates(), cells: () => pool.cellsReady() });
  registry.on('changed', (fn, version) => pool.retire(fn, version));
  const sweeper = new CodeSweeper({
    code, logger, layerShas, optKey: (shas) => OptDirs.key(shas),
    referencedCode: () => new Set([...registry.referencedCode(), ...layers.referencedCode()]),
    versionsInUse: () => pool.versionsInUse(),
    layerLists: () => layers.layerLists(),
    collectOpt: (keep) => opt.collect(keep),
  });
  registry.on('changed', () => sweeper.schedule());
  registry.on('published', (v: VersionRecord) => {
    if (SnapStart.applies(v)) pool.prepareRestore(v);
  });
  if (o.stemCells ?? true) await pool.enableStemCells(['nodejs24.x']);
  const concurrencyStore = new ConcurrencyStore(db);
  const concurrency = new Concurrency(concurrencyStore, accountConcurrency);
  const provisioned = new ProvisionedConcurrency({ pool, registry, store: concurrencyStore, concurrency, logger });
  registry.on('changed', (fn) => {
    if (!registry.functionExists(fn)) concurrency.forget(fn);
  });
  provisioned.resume();
  const invoker = new Invoker(registry, pool, region, logger, concurrency);
  const eventConfigs = new EventInvokeConfigs(db, region);
  const events = new AsyncInvoker({
    queue: new SqliteEventQueue(db), invoker, registry, configs: eventConfigs, logs, region, logger,
    concurrency: o.asyncConcurrency ?? 4, retryBaseMs: o.asyncRetryBaseMs ?? 60_000,
  });
  const linkSecret = Buffer.from(setting(db, 'link_secret', () => randomBytes(32).toString('hex')), 'hex');
  const server = createApiServer(
    { registry, code, store, layers, invoker, pool, logs, region, linkSecret, logger, limits: { accountConcurrency }, concurrency, provisioned, events, eventConfigs },
    (id) => (id === creds.accessKeyId ? creds : undefined),
    o.http,
  );
  await new Promise<void>((res, rej) => {
    server.once('error', rej);
    server.listen(o.port, o.host ?? '127.0.0.1', () => res());
  });
  const port = (server.address() as AddressInfo).port;
  await events.start();
  let closing: Promise<void> | undefined;
  return {
    url: `http://${o.host ?? '127.0.0.1'}:${port}`,
    port,
    credentials: creds,
    ...(file === undefined ? {} : { credentialsFile: file }),
    driverName: driver.name,
    close: () => (closing ??= (async () => {
      events.close();
      sweeper.close();
      provisioned.close();
      snapstart.close();
      clearInterval(expiry);
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await pool.close();
      await ephemeral?.close();
      await rapi.close();
      await logs.close();
      db.close();
      rmSync(socketDir, { recursive: true, force: true });
      rmSync(runtimeDir, { recursive: true, force: true });
    })()),
  };
}
